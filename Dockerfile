# syntax=docker/dockerfile:1
#
#   docker build -t botd .
#   docker compose -f deploy/docker-compose.yml up -d
#
# For production, pin the base image by digest (python:3.11-slim@sha256:...) so a rebuild cannot
# silently change the interpreter or system libraries under a running strategy.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The venv lives at the same path in both stages: its scripts carry absolute shebangs.
RUN python -m venv /opt/botd/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY botd ./botd
RUN /opt/botd/venv/bin/pip install .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 botd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin botd \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data
COPY --from=builder /opt/botd/venv /opt/botd/venv
ENV PATH=/opt/botd/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BOTD_DAEMON__DATA_DIR=/data
WORKDIR /app
# Root-owned and read-only to the service user: strategies are code, the daemon must not be able
# to rewrite them. The default strategies_dir ("strategies") resolves here via WORKDIR.
COPY strategies/ /app/strategies/
USER 10001:10001
# A fresh named volume inherits /data's ownership from the image, so uid 10001 can write it.
VOLUME /data
STOPSIGNAL SIGTERM
# `botd health` fails when the heartbeat is stale (hung or gone) and when the daemon says it is
# unhealthy: event loop lagging, or a venue disconnected past health.venue_grace.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["botd", "health"]
ENTRYPOINT ["botd"]
CMD ["run"]

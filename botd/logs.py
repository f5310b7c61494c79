"""The one place that configures logging: structlog for botd, stdlib logging routed through it.

Every line, whether it comes from a structlog logger or from a stdlib logger (asyncio, aiohttp,
warnings), passes through the same processors and the same :class:`Redactor` before it is
written. Nothing here runs at import time: :func:`configure_logging` is called once by the CLI
(and by tests, repeatedly).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = ["MASK", "Redactor", "configure_logging", "is_sensitive_key"]

MASK = "**********"

# Secrets shorter than this are not masked by value: replacing every "abc" or "1" in every log
# line would mangle the log (and reveal the secret by where the masks appear) while protecting
# nothing, because a secret that short is not a secret. Key-name masking still applies to them.
MIN_SECRET_LENGTH = 4

# Matched against the key lower-cased with "-" turned into "_". Substrings rather than exact
# names because denylists of exact names go stale (freqtrade masks `secret` but not
# `jwt_secret_key`); over-masking a log field is cheap, leaking a key is not.
_SENSITIVE_SUBSTRINGS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "signature",
    "authorization",
    "credential",
    "cookie",
)
_SENSITIVE_EXACT = frozenset({"sig", "x_mbx_apikey", "apca_api_key_id", "apca_api_secret_key"})
_SENSITIVE_PREFIXES = ("cb_access_",)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_FIRST_KEYS = ("timestamp", "level", "logger", "event")


def is_sensitive_key(key: object) -> bool:
    """Whether a field, header or parameter *named* ``key`` holds a credential."""
    if not isinstance(key, str):
        return False
    norm = key.lower().replace("-", "_")
    return (
        norm in _SENSITIVE_EXACT
        or norm.startswith(_SENSITIVE_PREFIXES)
        or any(s in norm for s in _SENSITIVE_SUBSTRINGS)
    )


def _describe_exception(exc: BaseException) -> str:
    # The whole cause/context chain: a wrapped exception's message is where URLs with signed
    # query strings (and so secrets) tend to hide.
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append("".join(traceback.format_exception_only(type(cur), cur)).strip())
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return " <- ".join(parts)


class Redactor:
    """Masks secrets by key name and by value.

    Usable as a structlog processor (on the event dict), as a post-render processor (on the
    final line) and on its own through :meth:`scrub` (e.g. for error text the CLI prints).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            variants.add(secret)
            # The forms a secret takes once rendered: JSON-escaped (with and without
            # ensure_ascii) and repr-escaped, so a secret containing quotes, backslashes or
            # non-ASCII characters is still found in the rendered line.
            variants.add(json.dumps(secret)[1:-1])
            variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
            variants.add(repr(secret)[1:-1])
        # Longest first so a secret that contains another one is masked whole.
        ordered = sorted(variants, key=lambda s: (-len(s), s))
        self._pattern: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None
        )

    @property
    def active(self) -> bool:
        """Whether any secret is registered for masking by value."""
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``**********``."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def scrub_value(self, value: Any) -> Any:
        """A copy of ``value`` safe to render: containers walked, other objects stringified."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {
                (self.scrub(k) if isinstance(k, str) else self.scrub(repr(k))): (
                    MASK if is_sensitive_key(k) and v is not None else self.scrub_value(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_value(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.scrub(repr(bytes(value)))
        if isinstance(value, BaseException):
            return self.scrub(_describe_exception(value))
        # Anything else is rendered through its repr by both renderers; stringify it here so
        # the secret inside an object's repr is seen (and masked) before rendering.
        try:
            text = repr(value)
        except Exception as exc:  # a broken __repr__ must not take logging down
            text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
        return self.scrub(text)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: Any) -> Any:
        """structlog processor: accepts an event dict (or an already rendered line)."""
        if isinstance(event_dict, str):
            return self.scrub(event_dict)
        if isinstance(event_dict, bytes | bytearray):
            return self.scrub(bytes(event_dict).decode("utf-8", "replace")).encode()
        out: EventDict = {}
        for key, value in event_dict.items():
            if is_sensitive_key(key) and value is not None:
                out[key] = MASK
            else:
                out[key] = self.scrub_value(value)
        return out


def _order_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Readability of JSON lines: the four keys everyone greps for come first.
    ordered: EventDict = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
    for k, v in event_dict.items():
        if k not in ordered:
            ordered[k] = v
    return ordered


def _drop_color_message(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    # uvicorn-style loggers attach a duplicate, ANSI-coloured copy of the message.
    event_dict.pop("color_message", None)
    return event_dict


class _BotdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed so a second configure_logging() replaces only ours."""


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def configure_logging(level: str, fmt: str, secrets: Iterable[str], stream: TextIO) -> None:
    """Configure structlog and the stdlib root logger to write to ``stream``.

    ``fmt`` is ``json`` (one JSON object per line), ``console`` (human-readable) or ``auto``
    (console on a TTY, JSON otherwise, e.g. under systemd or Docker). ``secrets`` are masked
    wherever they appear. Safe to call more than once; the last call wins.
    """
    try:
        numeric_level = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of {sorted(_LEVELS)}"
        ) from None
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}; expected 'auto', 'json' or 'console'")

    tty = _is_tty(stream)
    as_json = fmt == "json" or (fmt == "auto" and not tty)
    redactor = Redactor(secrets)

    # The wall clock is read here, in the logging configuration, and nowhere else outside
    # botd/clock.py: log timestamps are for humans and log shippers, not for trading logic.
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        timestamper,
    ]

    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become a plain string field *before* redaction, so secrets inside
            # exception messages and frames are masked like any other text.
            structlog.processors.format_exc_info,
            _order_keys,
            redactor,
            renderer,
            # Defence in depth: scrub the rendered line too (catches escaped forms and
            # anything a renderer adds on its own).
            redactor,
        ],
    )

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BotdHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _BotdHandler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(numeric_level)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: tests (and a future config reload) reconfigure at runtime, and a cached
        # logger would keep the processors of the first configuration.
        cache_logger_on_first_use=False,
    )

"""The control API's HTTP server: binding, authentication, routing, and ``control.json``.

It binds loopback by default. Every ``/v1`` endpoint needs the bearer token; ``/health``,
``/ready`` and the OpenAPI document do not, ``/metrics`` does unless ``metrics_public``. The
address actually bound (a port of 0 picks a free one) is written to ``<data_dir>/control.json``
(mode 0600, no token in it), which is how ``botd status`` and friends find the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from botd.control.api import ApiError, ControlApi, ControlTarget, reason_from
from botd.control.auth import TOKEN_FILE, TokenError, bearer_matches, load_or_create_token
from botd.control.openapi import openapi_document
from botd.errors import ConfigError
from botd.metrics import CONTENT_TYPE, DaemonMetrics
from botd.settings import ControlSettings, is_loopback_host

__all__ = ["CONTROL_FILE", "ControlServer", "ControlUnavailable", "botd_version"]

CONTROL_FILE = "control.json"
_MAX_BODY = 64 * 1024
_PUBLIC_PATHS = frozenset({"/health", "/ready", "/v1/openapi.json"})
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlUnavailable(RuntimeError):
    """The control API's address is taken (another process holds the port): exit 75."""


def botd_version() -> str:
    try:
        return version("botd")
    except PackageNotFoundError:
        return "0+unknown"


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


class ControlServer:
    def __init__(
        self,
        target: ControlTarget,
        *,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._target = target
        self._cfg: ControlSettings = target.settings.control
        self._data_dir: Path = target.settings.daemon.data_dir
        self._log = log or structlog.get_logger("botd.control")
        self._version = botd_version()
        self.metrics = DaemonMetrics(target.clock, self._version)
        self.api = ControlApi(
            target, version=self._version, uptime_s=lambda: self.metrics.uptime_s, log=self._log
        )
        self._token = ""
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._openapi = openapi_document(self._version, metrics_public=self._cfg.metrics_public)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and serve. Raises ConfigError (bad TLS files, an address that cannot be bound)
        or ControlUnavailable (the port is taken)."""
        cfg = self._cfg
        ssl_context = self._ssl_context()
        if cfg.token is not None:
            self._token = cfg.token.get_secret_value()
            token_source = "settings (control.token)"  # noqa: S105 - where it came from
        else:
            try:
                self._token, created = load_or_create_token(self._data_dir)
            except TokenError as exc:
                raise ConfigError(f"control.token: {exc}") from None
            token_source = f"{self._data_dir / TOKEN_FILE}" + (" (generated)" if created else "")
        self.metrics.attach(self._target)
        app = web.Application(middlewares=[self._middleware], client_max_size=_MAX_BODY)
        self._routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site: web.BaseSite
        if cfg.socket is not None:
            _remove_stale_socket(cfg.socket)
            site = web.UnixSite(runner, str(cfg.socket), ssl_context=ssl_context)
        else:
            site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            where = f"control.socket {cfg.socket}" if cfg.socket else f"{cfg.host}:{cfg.port}"
            if exc.errno == errno.EADDRINUSE:
                raise ControlUnavailable(
                    f"control API address {where} is in use by another process "
                    "(another botd? set control.port, or 0 for any free port)"
                ) from None
            field = "control.socket" if cfg.socket else "control.host/control.port"
            raise ConfigError(f"{field}: cannot bind {where}: {exc.strerror or exc}") from None
        info = self._write_control_file(runner, ssl_context is not None)
        self.url = info["url"]
        self._log.info(
            "control API listening",
            url=self.url,
            token=token_source,
            metrics_public=cfg.metrics_public,
        )
        if cfg.socket is None and not is_loopback_host(cfg.host) and ssl_context is None:
            self._log.warning(
                "control API reachable beyond loopback without TLS: the token travels in clear "
                "text; set control.tls_cert and control.tls_key",
                host=cfg.host,
            )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        (self._data_dir / CONTROL_FILE).unlink(missing_ok=True)
        await runner.cleanup()
        if self._cfg.socket is not None:
            with contextlib.suppress(OSError):
                self._cfg.socket.unlink()

    def _ssl_context(self) -> ssl.SSLContext | None:
        cfg = self._cfg
        if cfg.tls_cert is None or cfg.tls_key is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ConfigError(
                f"control.tls_cert/control.tls_key: cannot load {cfg.tls_cert} and "
                f"{cfg.tls_key}: {reason}"
            ) from None
        return ctx

    def _write_control_file(self, runner: web.AppRunner, tls: bool) -> dict[str, Any]:
        cfg = self._cfg
        scheme = "https" if tls else "http"
        if cfg.socket is not None:
            os.chmod(cfg.socket, 0o600)
            info: dict[str, Any] = {"url": f"{scheme}://localhost", "socket": str(cfg.socket)}
        else:
            host, port = runner.addresses[0][:2]
            shown = f"[{host}]" if ":" in host else host
            info = {"url": f"{scheme}://{shown}:{port}", "host": host, "port": port}
        info.update({"tls": tls, "pid": os.getpid(), "version": self._version})
        fd, tmp = tempfile.mkstemp(prefix=".control.", suffix=".tmp", dir=self._data_dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(info, fh)
            os.replace(tmp, self._data_dir / CONTROL_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return info

    # -- HTTP ---------------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        api = self.api
        get = [
            ("/health", lambda _: _json({"status": "ok"})),
            ("/ready", self._ready),
            ("/metrics", self._metrics),
            ("/v1/openapi.json", lambda _: _json(self._openapi)),
            ("/v1/status", lambda _: _json(api.status())),
            ("/v1/strategies", lambda _: _json(api.strategies())),
            ("/v1/orders", lambda r: _json(api.orders(r.query))),
            ("/v1/positions", lambda _: _json(api.positions())),
            ("/v1/balances", lambda _: _json(api.balances())),
            ("/v1/pnl", lambda _: _json(api.pnl())),
        ]
        for path, sync_handler in get:
            app.router.add_get(path, _wrap(sync_handler), allow_head=False)
        app.router.add_post("/v1/strategies/{id}/{action}", self._strategy_action)
        app.router.add_delete(
            "/v1/orders/{client_order_id}",
            _wrap(lambda r: _json(api.cancel(r.match_info["client_order_id"]), 202)),
        )
        app.router.add_post("/v1/halt", self._command(api.halt, "halted through the control API"))
        app.router.add_post(
            "/v1/resume", self._command(api.resume, "resumed through the control API")
        )
        app.router.add_post("/v1/kill", self._command(api.kill, "engaged through the control API"))

    def _ready(self, _: web.Request) -> web.Response:
        ready, problems = self.api.readiness()
        return _json({"ready": ready, "not_ready": problems}, 200 if ready else 503)

    def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _strategy_action(self, request: web.Request) -> web.Response:
        sid, action = request.match_info["id"], request.match_info["action"]
        if action == "enable":
            return _json(await self.api.enable(sid))
        if action == "disable":
            return _json(await self.api.disable(sid))
        if action == "reload":
            return _json(self.api.reload(sid))
        raise ApiError(404, "not_found", f"no action {action!r}: enable, disable or reload")

    def _command(self, run: Callable[[str], dict[str, Any]], default: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            body: object = None
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise ApiError(400, "bad_request", "the body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "bad_request", "the body must be a JSON object")
            return _json(run(reason_from(body, default)))

        return handle

    def _needs_token(self, path: str) -> bool:
        if path in _PUBLIC_PATHS:
            return False
        return not (path == "/metrics" and self._cfg.metrics_public)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if self._needs_token(request.path) and not bearer_matches(
                request.headers.get("Authorization"), self._token
            ):
                raise ApiError(401, "unauthorized", "a valid bearer token is required")
            return await handler(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="botd"'} if exc.status == 401 else {}
            return _json(exc.body(), exc.status, **headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _STATUS_CODES.get(exc.status, "http_error")
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return _json({"error": {"code": code, "message": exc.reason}}, exc.status, **headers)
        except Exception:
            self._log.exception("control API request failed", path=request.path)
            return _json(
                {"error": {"code": "internal", "message": "internal error (see the log)"}}, 500
            )


def _wrap(fn: Callable[[web.Request], web.Response]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return fn(request)

    return handle


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a process that died is in the way; a live one is not ours."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        probe.close()

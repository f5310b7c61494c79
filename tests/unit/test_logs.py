from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from botd.logs import MASK, Redactor, configure_logging, is_sensitive_key

CANARY = "CANARY-7f3e9a1c-SECRET"
CANARY_QUOTED = 'CANARY-"q\\uote"-7f3e'
SECRETS = [CANARY, CANARY_QUOTED, "abc", ""]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h).__name__ == "_BotdHandler":
            root.removeHandler(h)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)


def configure(level: str = "info", fmt: str = "json") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, SECRETS, stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_line_shape() -> None:
    stream = configure()
    structlog.get_logger("botd.test").info("order sent", qty="1.5", n=3)
    (line,) = lines(stream)
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["event"] == "order sent"
    assert line["level"] == "info"
    assert line["logger"] == "botd.test"
    assert line["qty"] == "1.5"
    assert line["n"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["timestamp"])


def test_auto_format_is_json_when_not_a_tty() -> None:
    stream = configure(fmt="auto")
    structlog.get_logger().warning("hello")
    assert lines(stream)[0]["event"] == "hello"


def test_console_format_is_human_readable() -> None:
    stream = configure(fmt="console")
    structlog.get_logger("botd.x").warning("hello", key="v")
    out = stream.getvalue()
    assert "hello" in out
    assert "key=v" in out
    assert "\x1b[" not in out  # no colours when the stream is not a TTY
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_contextvars_are_merged() -> None:
    stream = configure()
    structlog.contextvars.bind_contextvars(
        strategy="sma_cross", venue="paper", client_order_id="c-1"
    )
    structlog.get_logger().info("fill")
    logging.getLogger("asyncio").warning("slow callback")
    for line in lines(stream):
        assert line["strategy"] == "sma_cross"
        assert line["venue"] == "paper"
        assert line["client_order_id"] == "c-1"


def test_level_filtering() -> None:
    stream = configure(level="warning")
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    logging.getLogger("aiohttp.client").info("stdlib info")
    logging.getLogger("aiohttp.client").error("stdlib error")
    assert [line["event"] for line in lines(stream)] == ["w", "e", "stdlib error"]


def test_stdlib_logging_is_routed_through_structlog() -> None:
    stream = configure()
    logging.getLogger("aiohttp.access").warning("GET %s -> %d", "/x", 200, extra={"peer": "lo"})
    (line,) = lines(stream)
    assert line["event"] == "GET /x -> 200"
    assert line["logger"] == "aiohttp.access"
    assert line["level"] == "warning"
    assert line["peer"] == "lo"
    assert "timestamp" in line


def test_exceptions_become_a_string_field() -> None:
    stream = configure()
    try:
        raise ValueError("bad thing")
    except ValueError:
        structlog.get_logger().exception("failed")
    (line,) = lines(stream)
    assert line["level"] == "error"
    assert "Traceback" in line["exception"]
    assert "ValueError: bad thing" in line["exception"]


def test_warnings_are_captured() -> None:
    stream = configure()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    assert any("deprecated thing" in line["event"] for line in lines(stream))


def test_configure_twice_replaces_the_handler() -> None:
    first = configure()
    second = configure()
    structlog.get_logger().warning("once")
    logging.getLogger("x").warning("stdlib once")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once", "stdlib once"]
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_BotdHandler"]
    assert len(ours) == 1


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging("loud", "json", [], io.StringIO())
    with pytest.raises(ValueError, match="format"):
        configure_logging("info", "xml", [], io.StringIO())


class Request:
    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"<Request url={self.url!r}>"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_canary_secrets_never_reach_the_stream(fmt: str) -> None:
    stream = configure(level="debug", fmt=fmt)
    log = structlog.get_logger("botd.venues.binance")
    log.info("plain value", secret_value=CANARY, note="visible-1")
    log.info(f"in the event {CANARY}", note="visible-2")
    log.info(
        "nested",
        payload={"a": [1, {"deep": f"x{CANARY}y"}], "t": (CANARY,), CANARY: "as a key"},
        note="visible-3",
    )
    log.info("repr", request=Request(f"https://api/x?signature={CANARY}"), note="visible-4")
    log.info("by key name", api_key="short", headers={"X-MBX-APIKEY": "k", "CB-ACCESS-SIGN": "s"})
    log.info("quoted secret", value=CANARY_QUOTED, note="visible-5")
    try:
        try:
            raise ConnectionError(f"GET https://api/order?timestamp=1&signature={CANARY}")
        except ConnectionError as inner:
            raise RuntimeError("order failed") from inner
    except RuntimeError:
        log.exception("request failed", note="visible-6")
    log.warning("exception as value", error=ValueError(CANARY), note="visible-7")
    logging.getLogger("aiohttp.client").warning("stdlib %s", CANARY)
    logging.getLogger("aiohttp.client").warning("stdlib extra", extra={"token": "t", "v": CANARY})
    try:
        raise KeyError(CANARY)
    except KeyError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    out = stream.getvalue()
    assert CANARY not in out
    assert CANARY_QUOTED not in out
    assert json.dumps(CANARY_QUOTED)[1:-1] not in out
    assert "q\\uote" not in out and 'q"' not in out
    for n in range(1, 8):
        assert f"visible-{n}" in out
    assert MASK in out
    assert "order failed" in out  # the traceback itself is kept
    assert "ConnectionError" in out
    assert "Task exception was never retrieved" in out
    if fmt == "json":
        by_event = {line["event"]: line for line in lines(stream)}
        assert by_event["by key name"]["api_key"] == MASK
        assert by_event["by key name"]["headers"] == {"X-MBX-APIKEY": MASK, "CB-ACCESS-SIGN": MASK}
        assert by_event["stdlib extra"]["token"] == MASK
        assert by_event["repr"]["request"] == f"<Request url='https://api/x?signature={MASK}'>"


def test_short_secrets_are_not_masked_by_value() -> None:
    stream = configure()
    structlog.get_logger().info("abc and abcdef")
    assert lines(stream)[0]["event"] == "abc and abcdef"


def test_redactor_standalone() -> None:
    r = Redactor([CANARY, "x"])
    assert r.active
    assert r.scrub(f"error: {CANARY}!") == f"error: {MASK}!"
    assert r.scrub("nothing here") == "nothing here"
    assert not Redactor([]).active
    assert Redactor(["ab"]).scrub("ab") == "ab"
    # A secret containing another is masked whole, not left half-visible.
    r2 = Redactor(["SECRET", "SECRET-LONGER"])
    assert r2.scrub("SECRET-LONGER") == MASK


def test_redactor_survives_broken_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert "unrepresentable" in Redactor([CANARY]).scrub_value(Broken())


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "api_key",
        "apiKey",
        "password",
        "token",
        "signature",
        "Authorization",
        "x-mbx-apikey",
        "APCA-API-KEY-ID",
        "apca-api-secret-key",
        "CB-ACCESS-KEY",
        "cb-access-timestamp",
        "passphrase",
        "private_key",
        "jwt_secret_key",
        "ws_token",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["event", "symbol", "client_order_id", "price", "qty", "venue"])
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive_key(key)

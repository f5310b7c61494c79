"""Webhook and Telegram transports against a real local aiohttp receiver."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
import structlog.testing
from pydantic import SecretStr

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, FakeClock
from botd.events import KillSwitchChanged
from botd.logs import configure_logging
from botd.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryError,
    Notice,
    Notifier,
    TelegramTransport,
    WebhookTransport,
    sign_webhook,
    verify_webhook,
)
from tests.notify_receiver import Answer, Receiver

SECRET = "whsec-test-2f9c1a"
CANARY_TOKEN = "123456789:CANARY-tg-token-e41b7f09d2"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h).__name__ == "_BotdHandler":
            root.removeHandler(h)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def notice(
    title: str = "BUY 0.01 BTCUSDT @ 64,210.50 filled — strategy dip_buyer (binance)",
) -> Notice:
    return Notice("abc-1", "fills", title, "fee 0.064 USDT · taker", 1_700_000_000 * NS_PER_SECOND)


async def test_webhook_posts_signed_json(receiver: Receiver) -> None:
    clock = FakeClock()
    hook = WebhookTransport(
        url=SecretStr(receiver.url + "/hook"), secret=SecretStr(SECRET), clock=clock
    )
    try:
        await hook.send(notice())
    finally:
        await hook.close()
    [req] = receiver.requests
    assert req.path == "/hook"
    body = req.json
    assert body["kind"] == "fills"
    assert body["id"] == "abc-1"
    assert body["title"].startswith("BUY 0.01 BTCUSDT @ 64,210.50 filled")
    assert body["text"] == body["title"] + "\nfee 0.064 USDT · taker"
    assert body["ts"] == "2023-11-14T22:13:20+00:00"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Botd-Delivery"] == "abc-1"
    assert req.headers[TIMESTAMP_HEADER] == str(clock.time_ns() // NS_PER_SECOND)
    # The receiver's side of the recipe:
    now = clock.time_ns() / NS_PER_SECOND
    assert verify_webhook(SECRET.encode(), req.headers, req.body, now)
    expected = sign_webhook(SECRET.encode(), req.headers[TIMESTAMP_HEADER], req.body)
    assert req.headers[SIGNATURE_HEADER] == expected
    assert not verify_webhook(b"wrong key", req.headers, req.body, now)
    assert not verify_webhook(SECRET.encode(), req.headers, req.body + b" ", now)
    assert not verify_webhook(SECRET.encode(), req.headers, req.body, now + 301)  # a replay
    moved = {**req.headers, TIMESTAMP_HEADER: str(int(now) + 1)}  # timestamp is signed too
    assert not verify_webhook(SECRET.encode(), moved, req.body, now)


async def test_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    hook = WebhookTransport(url=SecretStr(receiver.url + "/hook"), secret=None, clock=FakeClock())
    try:
        await hook.send(notice())
    finally:
        await hook.close()
    assert SIGNATURE_HEADER not in receiver.requests[0].headers


@pytest.mark.parametrize(
    ("answer", "permanent", "retry_after"),
    [
        (Answer(500), False, None),
        (Answer(503, headers={"Retry-After": "7"}), False, 7.0),
        (Answer(429, headers={"Retry-After": "3"}), False, 3.0),
        (Answer(400), True, None),
        (Answer(404), True, None),
    ],
)
async def test_webhook_answers_are_classified(
    receiver: Receiver, answer: Answer, permanent: bool, retry_after: float | None
) -> None:
    receiver.script.append(answer)
    hook = WebhookTransport(url=SecretStr(receiver.url + "/h"), secret=None, clock=FakeClock())
    try:
        with pytest.raises(DeliveryError) as err:
            await hook.send(notice())
    finally:
        await hook.close()
    assert err.value.permanent is permanent
    assert err.value.retry_after == retry_after
    assert f"HTTP {answer.status}" in str(err.value)


async def test_telegram_send_message(receiver: Receiver) -> None:
    tg = TelegramTransport(
        bot_token=SecretStr(CANARY_TOKEN),
        chat_id="-100123",
        clock=FakeClock(),
        api_base=receiver.url,
    )
    try:
        await tg.send(notice("SELL 1 <X> & Y"))
    finally:
        await tg.close()
    [req] = receiver.requests
    assert req.path == f"/bot{CANARY_TOKEN}/sendMessage"
    assert req.json == {
        "chat_id": "-100123",
        "text": "<b>SELL 1 &lt;X&gt; &amp; Y</b>\nfee 0.064 USDT · taker",
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    assert CANARY_TOKEN not in repr(tg)


async def test_telegram_plain_mode_and_long_text(receiver: Receiver) -> None:
    tg = TelegramTransport(
        bot_token=SecretStr(CANARY_TOKEN),
        chat_id="42",
        clock=FakeClock(),
        api_base=receiver.url,
        parse_mode="plain",
    )
    long = Notice("i", "alerts", "t", "x" * 5000, 0)
    try:
        await tg.send(long)
    finally:
        await tg.close()
    payload = receiver.requests[0].json
    assert "parse_mode" not in payload
    assert len(payload["text"]) == 4096


@pytest.mark.parametrize(
    ("answer", "permanent", "retry_after"),
    [
        (
            Answer(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 7",
                    "parameters": {"retry_after": 7},
                },
            ),
            False,
            7.0,
        ),
        (Answer(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}), False, None),
        (Answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}), True, None),
        (
            Answer(400, {"ok": False, "error_code": 400, "description": "chat not found"}),
            True,
            None,
        ),
    ],
)
async def test_telegram_answers_are_classified(
    receiver: Receiver, answer: Answer, permanent: bool, retry_after: float | None
) -> None:
    receiver.script.append(answer)
    tg = TelegramTransport(
        bot_token=SecretStr(CANARY_TOKEN), chat_id="1", clock=FakeClock(), api_base=receiver.url
    )
    try:
        with pytest.raises(DeliveryError) as err:
            await tg.send(notice())
    finally:
        await tg.close()
    assert err.value.permanent is permanent
    assert err.value.retry_after == retry_after
    assert answer.payload["description"] in str(err.value)


async def test_canary_token_never_reaches_logs_or_errors(receiver: Receiver) -> None:
    """Three ways a token-bearing URL tries to escape: aiohttp's InvalidURL prints the URL,
    a server echoes the request path, a connection is refused. No secret is registered with
    the log redactor here: the transport must scrub on its own."""
    stream = io.StringIO()
    configure_logging("debug", "json", [], stream)
    # The API echoing the request line, token and all, in its error description.
    receiver.script.append(
        Answer(500, {"ok": False, "error_code": 500, "description": f"boom /bot{CANARY_TOKEN}"})
    )
    errors: list[str] = []
    with structlog.testing.capture_logs() as captured:
        for base in ["http://127.0.0.1:99999", receiver.url, "http://127.0.0.1:1"]:
            tg = telegram(base)
            try:
                await tg.send(notice())
            except DeliveryError as exc:
                errors.append(f"{exc} {exc!r} {exc.__cause__!r}")
            finally:
                await tg.close()
        # And through the notifier, which logs every failed delivery.
        clock = FakeClock()
        notifier = Notifier(
            bus=Bus(), clock=clock, transports=[telegram("http://127.0.0.1:99999")], max_attempts=1
        )
        notifier.enqueue(KillSwitchChanged(True, "test", clock.time_ns()))
        task = asyncio.create_task(notifier.run())
        async with asyncio.timeout(5):
            await notifier.drain()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(errors) == 3
    assert notifier.stats()["telegram"].failed == 1
    assert "InvalidUrlClientError" in errors[0]
    assert "**********" in errors[0]
    assert "boom" in errors[1]
    assert "Cannot connect" in errors[2]
    assert any(e["event"] == "notification not delivered" for e in captured)
    for text in [*errors, stream.getvalue(), json.dumps(captured, default=str)]:
        assert CANARY_TOKEN not in text
        assert "CANARY-tg-token" not in text


def telegram(base: str) -> TelegramTransport:
    return TelegramTransport(
        bot_token=SecretStr(CANARY_TOKEN), chat_id="1", clock=FakeClock(), api_base=base
    )

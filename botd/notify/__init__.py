"""Notifications: one :class:`Notifier` fed from the bus, webhook and Telegram transports."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from botd.bus import Bus
from botd.clock import Clock
from botd.notify.batching import Batch, Pacer
from botd.notify.messages import DailySummary, Notice, render
from botd.notify.notifier import EVENT_KINDS, Notifier, TransportStats
from botd.notify.transports import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryError,
    TelegramTransport,
    Transport,
    WebhookTransport,
    sign_webhook,
    verify_webhook,
)
from botd.settings import NotifySettings, daily_cron

__all__ = [
    "EVENT_KINDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Batch",
    "DailySummary",
    "DeliveryError",
    "Notice",
    "Notifier",
    "Pacer",
    "TelegramTransport",
    "Transport",
    "TransportStats",
    "WebhookTransport",
    "build_notifier",
    "render",
    "sign_webhook",
    "verify_webhook",
]


def build_transports(settings: NotifySettings, clock: Clock) -> list[Transport]:
    try:
        agent = f"botd/{version('botd')}"
    except PackageNotFoundError:
        agent = "botd"
    transports: list[Transport] = []
    hook = settings.webhook
    if hook.url is not None:
        transports.append(
            WebhookTransport(
                url=hook.url,
                secret=hook.secret,
                clock=clock,
                timeout_s=hook.timeout,
                user_agent=agent,
            )
        )
    tg = settings.telegram
    if tg.bot_token is not None and tg.chat_id:
        transports.append(
            TelegramTransport(
                bot_token=tg.bot_token,
                chat_id=tg.chat_id,
                clock=clock,
                api_base=tg.api_base,
                parse_mode=tg.parse_mode,
                timeout_s=tg.timeout,
            )
        )
    return transports


def build_notifier(
    settings: NotifySettings,
    *,
    bus: Bus,
    clock: Clock,
    status: Callable[[], Mapping[str, Any]] | None = None,
    rng: random.Random | None = None,
) -> Notifier | None:
    """The configured notifier, or None when no transport is configured."""
    transports = build_transports(settings, clock)
    if not transports:
        return None
    return Notifier(
        bus=bus,
        clock=clock,
        transports=transports,
        events=settings.events,
        queue_size=settings.queue_size,
        max_attempts=settings.max_attempts,
        coalesce_window_s=settings.coalesce_window,
        pacing={
            "telegram": Pacer(
                clock,
                min_interval_s=settings.telegram.min_interval,
                per_minute=settings.telegram.max_per_minute,
            )
        },
        daily_summary_cron=daily_cron(settings.daily_summary) if settings.daily_summary else None,
        timezone=settings.timezone,
        status=status,
        rng=rng,
    )

"""Binance's error body ``{"code": -N, "msg": "..."}`` with the HTTP status it travels with."""

from __future__ import annotations

__all__ = [
    "BinanceError",
    "bad_symbol",
    "illegal_chars",
    "mandatory",
    "not_required",
]

DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"


class BinanceError(Exception):
    """Raised by a handler; the server answers with it instead of a result."""

    def __init__(
        self,
        code: int,
        msg: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}
        # When a rate-limited request may be retried (epoch ms); the WS API sends it as
        # ``error.data.retryAfter``, REST as the ``Retry-After`` header (in seconds).
        self.retry_after_ms = retry_after_ms


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def illegal_chars(name: str, legal: str) -> BinanceError:
    return BinanceError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def bad_symbol() -> BinanceError:
    return BinanceError(-1121, "Invalid symbol.")

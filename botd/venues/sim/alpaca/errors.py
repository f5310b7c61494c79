"""Alpaca's error replies: an HTTP status and a ``{"code": <8 digits>, "message": …}`` body.

The codes follow WIRE_FACTS §2.2; where the public record gives no exact message (cancel of a
closed order, replace, duplicate client order id) the wording is the simulator's own choice.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AlpacaError",
    "forbidden_balance",
    "invalid",
    "not_cancelable",
    "not_found",
    "rate_limited",
    "unauthorized",
]


class AlpacaError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {**self.extra, "code": self.code, "message": self.message}


def invalid(message: str) -> AlpacaError:
    """422: the request is well-formed JSON but its parameters are not acceptable."""
    return AlpacaError(422, 40010001, message)


def unauthorized() -> AlpacaError:
    return AlpacaError(401, 40110000, "request is not authorized")


def forbidden_balance(message: str, extra: Mapping[str, object]) -> AlpacaError:
    return AlpacaError(403, 40310000, message, extra)


def not_found(what: str = "order") -> AlpacaError:
    return AlpacaError(404, 40410000, f"{what} is not found.")


def not_cancelable(status: str) -> AlpacaError:
    return AlpacaError(422, 42210000, f'order is already in "{status}" state')


def rate_limited(headers: Mapping[str, str]) -> AlpacaError:
    return AlpacaError(429, 42910000, "rate limit exceeded", headers=headers)

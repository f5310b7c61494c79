"""What the control API's endpoints do and answer, independent of the HTTP server.

Every answer is a JSON object; money and quantities are decimal strings (never floats), times
are integer nanoseconds since the epoch. Errors raise :class:`ApiError` with a stable code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import structlog

from botd.clock import NS_PER_SECOND, Clock
from botd.logs import Redactor
from botd.metrics import MetricsSource
from botd.model import Order, OrderStatus, Position
from botd.risk import TradingState
from botd.settings import Settings
from botd.store import Journal, JournalError, JSONValue
from botd.strategy.host import StrategyStatus
from botd.strategy.manager import StrategyManager

__all__ = [
    "DISABLED_KEY",
    "ApiError",
    "ControlApi",
    "ControlTarget",
    "load_disabled",
]

DISABLED_KEY = "control.disabled_strategies"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_REASON = 500
_ZERO = Decimal(0)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class ControlTarget(MetricsSource, Protocol):
    """What the control API drives; :class:`botd.app.Daemon` is one."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def strategies(self) -> StrategyManager: ...

    @property
    def reconcile_errors(self) -> Mapping[str, str]: ...


async def load_disabled(journal: Journal) -> set[str]:
    """The strategies an operator disabled, as persisted by the control API."""
    saved = await journal.get_value(DISABLED_KEY)
    return {str(x) for x in saved} if isinstance(saved, list) else set()


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def order_json(o: Order) -> dict[str, Any]:
    return {
        "client_order_id": o.client_order_id,
        "strategy": o.strategy_id,
        "venue": o.venue,
        "symbol": o.symbol,
        "side": o.side.value,
        "type": o.type.value,
        "qty": _dec(o.qty),
        "price": _dec(o.price),
        "tif": o.tif.value,
        "post_only": o.post_only,
        "status": o.status.value,
        "open": o.is_open,
        "filled_qty": _dec(o.filled_qty),
        "avg_fill_price": _dec(o.avg_fill_price),
        "venue_order_id": o.venue_order_id,
        "reason": o.reason,
        "ts_created": o.ts_created,
        "ts_updated": o.ts_updated,
        "stop_price": _dec(o.stop_price),
    }


class ControlApi:
    def __init__(
        self,
        target: ControlTarget,
        *,
        version: str,
        uptime_s: Callable[[], float],
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._t = target
        # Venue error texts are shown as the venue wrote them, minus any secret.
        self._scrub = Redactor(target.settings.secret_values()).scrub
        self._version = version
        self._uptime_s = uptime_s
        self._log = log or structlog.get_logger("botd.control")

    # -- reads --------------------------------------------------------------------------------
    def venues(self) -> list[dict[str, Any]]:
        t = self._t
        now = t.clock.monotonic_ns()
        out = []
        for feed in t.feeds:
            name = feed.venue
            last = t.reconciled.get(name)
            error = t.reconcile_errors.get(name)
            out.append(
                {
                    "name": name,
                    "connected": feed.connected,
                    "stream_events": feed.events,
                    "stream_reconnects": feed.reconnects,
                    "last_event_age_s": (now - feed.last_event_ns) / NS_PER_SECOND
                    if feed.events
                    else None,
                    "stream_error": self._scrub(feed.last_error) if feed.last_error else None,
                    "reconciled": last is not None and error is None,
                    "last_reconcile_ns": last,
                    "reconcile_error": error,
                    "trading_state": t.risk.state_of(venue=name).value,
                    "rate_limiter": t.gateway.throttle(name).state,
                }
            )
        return out

    def readiness(self) -> tuple[bool, list[str]]:
        problems = []
        for venue in self.venues():
            if not venue["connected"]:
                problems.append(f"{venue['name']}: market data not connected")
            if not venue["reconciled"]:
                problems.append(f"{venue['name']}: not reconciled")
        return not problems, problems

    def trading(self) -> dict[str, Any]:
        snap = self._t.risk.snapshot()
        return {
            "state": snap["global"]["state"],
            "killed": snap["killed"],
            "reason": snap["global"]["reason"],
        }

    def status(self) -> dict[str, Any]:
        t = self._t
        ready, problems = self.readiness()
        journal = t.journal
        return {
            "version": self._version,
            "pid": os.getpid(),
            "uptime_s": self._uptime_s(),
            "ready": ready,
            "not_ready": problems,
            "trading": self.trading(),
            "venues": self.venues(),
            "strategies": [
                {"id": s["id"], "status": s["status"]} for s in self.strategies()["strategies"]
            ],
            "open_orders": len(t.gateway.open_orders()),
            "journal_healthy": journal is not None and journal.healthy,
        }

    def _strategy(self, sid: str) -> dict[str, Any]:
        t = self._t
        hosted = t.host.strategies.get(sid)
        path: Path | None = t.strategies.sources.get(sid)
        disabled = sid in t.strategies.disabled
        if hosted is not None and hosted.status is not StrategyStatus.STOPPED:
            status = hosted.status.value
        elif disabled:
            status = "disabled"
        elif hosted is not None:
            status = StrategyStatus.STOPPED.value
        else:
            status = "not_started"
        strategy = hosted.strategy if hosted is not None else None
        return {
            "id": sid,
            "status": status,
            "disabled": disabled,
            "file": None if path is None else str(path),
            "venue": None if strategy is None else strategy.venue,
            "symbols": [] if strategy is None else list(strategy.traded_symbols),
            "halt_reason": (hosted.halt_reason or None) if hosted is not None else None,
            "hook_calls": 0 if hosted is None else hosted.calls,
            "hook_errors": 0 if hosted is None else hosted.error_total,
            "hook_overruns": 0 if hosted is None else hosted.overrun_total,
            "trading_state": t.risk.state_of(strategy_id=sid).value,
            "open_orders": len(t.gateway.open_orders(sid)),
        }

    def strategies(self) -> dict[str, Any]:
        t = self._t
        ids = set(t.host.strategies) | set(t.strategies.sources) | t.strategies.disabled
        return {"strategies": [self._strategy(sid) for sid in sorted(ids)]}

    def orders(self, query: Mapping[str, str]) -> dict[str, Any]:
        allowed = {"strategy", "symbol", "venue", "status", "limit"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise ApiError(400, "bad_request", f"unknown query parameter(s): {', '.join(unknown)}")
        status = query.get("status")
        statuses: set[OrderStatus] | None = None
        if status is not None:
            if status == "open":
                statuses = {s for s in OrderStatus if not s.is_terminal}
            else:
                try:
                    statuses = {OrderStatus(status)}
                except ValueError:
                    valid = ", ".join(["open", *(s.value for s in OrderStatus)])
                    raise ApiError(400, "bad_request", f"status must be one of: {valid}") from None
        limit = DEFAULT_LIMIT
        if "limit" in query:
            raw = query["limit"]
            if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
                raise ApiError(400, "bad_request", f"limit must be an integer 1..{MAX_LIMIT}")
            limit = int(raw)
        strategy, symbol, venue = query.get("strategy"), query.get("symbol"), query.get("venue")
        found: list[Order] = []
        # The gateway keeps orders in creation order (the journal's, then this run's).
        for o in reversed(self._t.gateway.all_orders()):
            if strategy is not None and o.strategy_id != strategy:
                continue
            if symbol is not None and o.symbol != symbol:
                continue
            if venue is not None and o.venue != venue:
                continue
            if statuses is not None and o.status not in statuses:
                continue
            found.append(o)
            if len(found) >= limit:
                break
        return {"orders": [order_json(o) for o in found], "count": len(found)}

    def positions(self) -> dict[str, Any]:
        out = []
        for (sid, venue, symbol), pos in sorted(self._t.host.positions().items()):
            mark, unrealized = self._mark(venue, symbol, pos)
            out.append(
                {
                    "strategy": sid,
                    "venue": venue,
                    "symbol": symbol,
                    "qty": _dec(pos.qty),
                    "avg_price": _dec(pos.avg_price),
                    "realized_pnl": _dec(pos.realized_pnl),
                    "unrealized_pnl": _dec(unrealized),
                    "fees_quote": _dec(pos.fees_quote),
                    "mark": _dec(mark),
                    "quote_asset": self._quote_asset(venue, symbol),
                }
            )
        return {"positions": out}

    def balances(self) -> dict[str, Any]:
        gw = self._t.gateway
        out = []
        for venue in gw.venue_names:
            for asset, bal in sorted(gw.balances(venue).items()):
                out.append(
                    {
                        "venue": venue,
                        "asset": asset,
                        "free": _dec(bal.free),
                        "locked": _dec(bal.locked),
                        "total": _dec(bal.total),
                    }
                )
        return {"balances": out}

    def pnl(self) -> dict[str, Any]:
        snap = self._t.risk.snapshot()
        today: dict[str, str] = snap["daily"]["strategies"]
        per: dict[str, dict[str, dict[str, Decimal]]] = {}
        for (sid, venue, symbol), pos in self._t.host.positions().items():
            quote = self._quote_asset(venue, symbol) or "?"
            _, unrealized = self._mark(venue, symbol, pos)
            acc = per.setdefault(sid, {}).setdefault(
                quote, {"realized": _ZERO, "unrealized": _ZERO, "fees": _ZERO}
            )
            acc["realized"] += pos.realized_pnl
            acc["unrealized"] += unrealized or _ZERO
            acc["fees"] += pos.fees_quote
        ids = sorted(set(per) | set(today))
        return {
            "day": snap["daily"]["day"],
            "realized_today": snap["daily"]["pnl"],
            "strategies": [
                {
                    "strategy": sid,
                    "realized_today": today.get(sid),
                    "by_quote_asset": {
                        q: {k: _dec(v) for k, v in acc.items()}
                        for q, acc in sorted(per.get(sid, {}).items())
                    },
                }
                for sid in ids
            ],
        }

    def _quote_asset(self, venue: str, symbol: str) -> str | None:
        try:
            return self._t.gateway.instrument(venue, symbol).quote
        except ValueError:
            return None

    def _mark(
        self, venue: str, symbol: str, pos: Position
    ) -> tuple[Decimal | None, Decimal | None]:
        quote = self._t.gateway.last_quote(venue, symbol)
        if quote is None:
            return None, None
        mid = (quote.bid + quote.ask) / 2
        return mid, pos.unrealized_pnl(mid)

    # -- commands -----------------------------------------------------------------------------
    def _known_strategy(self, sid: str) -> None:
        t = self._t
        if sid not in t.strategies.sources and sid not in t.host.strategies:
            raise ApiError(404, "unknown_strategy", f"no strategy {sid!r}")

    async def _persist_disabled(self) -> bool:
        journal = self._t.journal
        if journal is None:
            return False
        try:
            ids: list[JSONValue] = [*sorted(self._t.strategies.disabled)]
            await journal.set_value(DISABLED_KEY, ids)
        except JournalError as exc:
            self._log.error("disabled strategies not persisted", error=str(exc))
            return False
        return True

    async def disable(self, sid: str) -> dict[str, Any]:
        self._known_strategy(sid)
        try:
            self._t.strategies.disable(sid)
        except KeyError:
            raise ApiError(
                409, "not_loaded", f"strategy {sid!r} is not from a loaded file"
            ) from None
        persisted = await self._persist_disabled()
        return {"strategy": self._strategy(sid), "persisted": persisted}

    async def enable(self, sid: str) -> dict[str, Any]:
        self._known_strategy(sid)
        try:
            self._t.strategies.enable(sid)
        except KeyError:
            raise ApiError(
                409, "not_loaded", f"strategy {sid!r} is not from a loaded file"
            ) from None
        except ValueError as exc:
            await self._persist_disabled()
            raise ApiError(409, "not_started", f"strategy {sid!r} not started: {exc}") from None
        persisted = await self._persist_disabled()
        return {"strategy": self._strategy(sid), "persisted": persisted}

    def reload(self, sid: str) -> dict[str, Any]:
        self._known_strategy(sid)
        try:
            errors = self._t.strategies.reload(sid)
        except KeyError:
            raise ApiError(
                409, "not_loaded", f"strategy {sid!r} is not from a loaded file"
            ) from None
        if errors:
            text = "; ".join(str(e) for e in errors)
            raise ApiError(422, "reload_failed", f"the previous version keeps running: {text}")
        return {"strategy": self._strategy(sid)}

    def cancel(self, client_order_id: str) -> dict[str, Any]:
        gw = self._t.gateway
        order = gw.order(client_order_id)
        if order is None:
            raise ApiError(404, "unknown_order", f"no order {client_order_id!r}")
        if not order.is_open:
            raise ApiError(
                409, "order_not_open", f"order {client_order_id!r} is {order.status.value}"
            )
        gw.cancel(client_order_id)
        self._log.warning("order cancel requested by an operator", client_order_id=client_order_id)
        current = gw.order(client_order_id) or order
        return {"order": order_json(current), "cancel_requested": True}

    def halt(self, reason: str) -> dict[str, Any]:
        self._t.risk.set_state(TradingState.HALTED, f"operator: {reason}")
        return {"trading": self.trading()}

    def resume(self, reason: str) -> dict[str, Any]:
        risk = self._t.risk
        if risk.killed:
            risk.release(reason)
            self._log.warning("kill switch released; trading resumes", reason=reason)
        else:
            risk.set_state(TradingState.ACTIVE, f"operator: {reason}")
        return {"trading": self.trading()}

    def kill(self, reason: str) -> dict[str, Any]:
        cancelling = self._t.gateway.kill(reason)
        self._log.error("KILL SWITCH engaged", reason=reason, cancelling=cancelling)
        return {"trading": self.trading(), "cancelling": cancelling}


def reason_from(body: object, default: str) -> str:
    if body is None:
        return default
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown: Sequence[str] = sorted(set(body) - {"reason"})
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s): {', '.join(unknown)}")
    reason = body.get("reason", default)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise ApiError(
            400, "bad_request", f"reason must be a non-empty string of at most {MAX_REASON}"
        )
    return reason.strip()

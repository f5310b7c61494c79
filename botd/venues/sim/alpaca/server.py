"""The Alpaca protocol simulator: trading API v2, market-data streams and ``trade_updates``,
all on one loopback port, over the matching engine and the seeded synthetic market.

One engine account per API key, holding USD and the assets it bought (a cash account: no
margin, no shorting). The engine knows orders in domain terms; Alpaca's own life cycle lives
here in ``Order`` records: an order may be *working* (in the engine's book) or *parked*
(held by the simulator: queued for the open, outside the hours it may trade in, or a stop
waiting for its trigger). A parked order reserves nothing in the engine, so buying power and
available quantity are reduced by what parked orders would need.

Market hours come from the XNYS calendar on the injected clock (see :mod:`.hours`):
- orders for equities work in the regular session; outside it they are accepted and queued
  for the next open (status ``accepted``), as Alpaca does for orders sent after hours;
- ``extended_hours`` (DAY limit orders only) also work from 04:00 ET to the open and for four
  hours after the close;
- DAY orders expire at the end of their session (the close, or the end of after-hours);
  GTC orders stop working at the close and resume at the next open;
- ``opg`` orders go to the open (accepted until 09:28 ET and again from 19:00 ET),
  ``cls`` orders to the close (accepted until 15:50 ET and again from 19:00 ET); both fill
  what they can against the book at that moment and cancel the rest;
- crypto trades around the clock; the equities' synthetic market moves only from 04:00 to
  the end of after-hours on session days, except FAKEPACA (the always-on test feed).

Replies reflect the state after matching: a marketable order comes back already filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from botd.clock import Clock
from botd.model import OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim.alpaca.activities import ActivityLog
from botd.venues.sim.alpaca.assets import AssetSpec, default_assets
from botd.venues.sim.alpaca.errors import (
    AlpacaError,
    forbidden_balance,
    invalid,
    not_cancelable,
    not_found,
    unauthorized,
)
from botd.venues.sim.alpaca.hours import ET, Phase, UsEquityHours
from botd.venues.sim.alpaca.limits import RateLimiter
from botd.venues.sim.alpaca.marketdata import MarketFeed
from botd.venues.sim.alpaca.orders import (
    Order,
    date_param,
    decimal_param,
    money,
    opt_decimal,
    order_json,
    time_param,
)
from botd.venues.sim.alpaca.streams import DataStreamConfig, DataStreamHub
from botd.venues.sim.alpaca.updates import TradeUpdatesHub
from botd.venues.sim.alpaca.wire import IdSource, dec, dumps, rfc3339, rfc3339_et
from botd.venues.sim.engine import EngineResult, MatchingEngine
from botd.venues.sim.market import MarketGenerator

__all__ = ["AlpacaSimulator", "DataStreamConfig"]

_ZERO = Decimal(0)
_NS = 1_000_000_000
_MINUTE_NS = 60 * _NS
_TIFS = ("day", "gtc", "opg", "cls", "ioc", "fok")
_CRYPTO_TIFS = ("gtc", "ioc")
_TYPES = ("market", "limit", "stop", "stop_limit")
_OPG_CUTOFF_NS = 2 * _MINUTE_NS  # 09:28 ET
_CLS_CUTOFF_NS = 10 * _MINUTE_NS  # 15:50 ET
_REOPEN_NS = 3 * 3600 * _NS  # 19:00 ET, three hours after a normal close
_MAX_CLIENT_ID = 48
_DEFAULT_CASH = Decimal("100000")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AlpacaSimulator:
    """``api_keys`` maps each API key id to its secret; ``cash`` the starting USD of a key's
    account (100 000 when not listed). ``step_rate`` market steps per second of the injected
    clock; None leaves stepping to the caller (:meth:`step`). ``hours`` the equities' trading
    hours (the XNYS calendar by default)."""

    def __init__(
        self,
        *,
        clock: Clock,
        seed: int,
        api_keys: Mapping[str, str],
        cash: Mapping[str, Decimal] | None = None,
        assets: Sequence[AssetSpec] | None = None,
        step_rate: float | None = 10.0,
        requests_per_minute: int = 200,
        streams: DataStreamConfig | None = None,
        hours: UsEquityHours | None = None,
    ) -> None:
        if step_rate is not None and step_rate <= 0:
            raise ValueError("step_rate must be positive")
        self._clock = clock
        self._assets = {a.symbol: a for a in (assets or default_assets().values())}
        self._by_alias: dict[str, AssetSpec] = {}
        for a in self._assets.values():
            for alias in (a.symbol, a.position_symbol, a.asset_id):
                self._by_alias[alias] = a
        instruments = [a.spec.instrument("alpaca") for a in self._assets.values()]
        self._engine = MatchingEngine("alpaca", instruments, maker_fee=_ZERO, taker_fee=_ZERO)
        self._keys = dict(api_keys)
        for key in self._keys:
            usd = (cash or {}).get(key, _DEFAULT_CASH)
            self._engine.open_account(key, {"USD": usd})
        self._market = MarketGenerator(
            self._engine, [a.spec for a in self._assets.values()], seed=seed
        )
        self._hours = hours if hours is not None else UsEquityHours()
        self._ids = IdSource(seed)
        self._interval = None if step_rate is None else 1.0 / step_rate
        self._limiter = RateLimiter(requests_per_minute)
        self._orders: dict[str, Order] = {}  # by id, in creation order
        self._open_ids: dict[str, None] = {}  # the open ones, in creation order
        self._by_client: dict[tuple[str, str], str] = {}
        self._by_engine: dict[str, Order] = {}
        self._basis: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}  # qty, cost
        self._account_ids = {k: self._ids.uuid() for k in self._keys}
        self._account_numbers = {k: f"PA{i + 1:09d}" for i, k in enumerate(self._keys)}
        self._data = DataStreamHub(self._keys, clock, streams)
        self._updates = TradeUpdatesHub(self._keys)
        self._feed = MarketFeed(self._engine, self._data)
        self._activities_log = ActivityLog(self._account_ids)
        self._runner: web.AppRunner | None = None
        self._stepper: asyncio.Task[None] | None = None
        self._started = False
        self._routes = self._route_table()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def engine(self) -> MatchingEngine:
        return self._engine

    @property
    def hours(self) -> UsEquityHours:
        return self._hours

    @property
    def stream_clients(self) -> dict[str, int]:
        """Open data-stream connections and ``trade_updates`` listeners."""
        return {"data": self._data.connections, "trade_updates": self._updates.listeners}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host`` (loopback only) and return the port."""
        if not _loopback(host):
            raise ValueError(f"the simulator listens on loopback only, not {host!r}")
        if self._runner is not None:
            raise RuntimeError("already started")
        self.step()
        app = web.Application()
        self._data.add_routes(app)
        self._updates.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self._interval is not None:
            self._stepper = asyncio.create_task(self._run_market(self._interval))
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._stepper is not None:
            self._stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stepper
            self._stepper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop_stream_connections(self) -> None:
        """Close every websocket (market data and ``trade_updates``): clients must reconnect."""
        await self._data.drop_all()
        await self._updates.drop_all()

    async def _run_market(self, interval: float) -> None:
        while True:
            await self._clock.sleep(interval)
            self.step()

    def step(self) -> None:
        """One market step at the clock's time, then the order book-keeping that time
        implies (opens, closes, expiries, stop triggers)."""
        ts = self._clock.time_ns()
        phase = self._hours.phase(ts)
        for asset in self._assets.values():
            if self._started and asset.feed == "stocks" and phase is Phase.CLOSED:
                self._feed.roll_bar(asset, ts)
                continue
            result, _ = self._market.step(asset.symbol, ts)
            self._after_engine(asset, result, ts, quote=True)
        self._started = True
        self._housekeeping(ts)

    # -- dispatch -----------------------------------------------------------------------------

    def _route_table(self) -> list[tuple[str, str, bool, Callable[[_Req], object]]]:
        """(method, path, path is a prefix, handler)."""
        return [
            ("GET", "/v2/clock", False, self._clock_json),
            ("GET", "/v2/account", False, self._account),
            ("GET", "/v2/account/activities", False, self._activities),
            ("GET", "/v2/account/activities/", True, self._activities),
            ("GET", "/v2/calendar", False, self._calendar),
            ("GET", "/v2/assets", False, self._list_assets),
            ("GET", "/v2/assets/", True, self._get_asset),
            ("GET", "/v2/positions", False, self._positions),
            ("DELETE", "/v2/positions", False, self._close_all_positions),
            ("GET", "/v2/positions/", True, self._get_position),
            ("DELETE", "/v2/positions/", True, self._close_position),
            ("POST", "/v2/orders", False, self._new_order),
            ("GET", "/v2/orders", False, self._list_orders),
            ("DELETE", "/v2/orders", False, self._cancel_all),
            ("GET", "/v2/orders:by_client_order_id", False, self._by_client_id),
            ("GET", "/v2/orders/", True, self._get_order),
            ("PATCH", "/v2/orders/", True, self._replace_order),
            ("DELETE", "/v2/orders/", True, self._cancel_order),
        ]

    def _find_route(self, method: str, path: str) -> tuple[Callable[[_Req], object], str] | None:
        for m, p, prefix, handler in self._routes:
            if m != method:
                continue
            if prefix and path.startswith(p) and len(path) > len(p):
                return handler, path[len(p) :]
            if not prefix and path == p:
                return handler, ""
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found = self._find_route(request.method, request.path)
        if found is None:
            return _json(404, {"code": 40410000, "message": "endpoint not found"})
        handler, tail = found
        now = self._clock.time_ns()
        headers: dict[str, str] = {}
        try:
            account = self._authenticate(request)
            headers = self._limiter.charge(account, now)
            body: dict[str, Any] = {}
            if request.method in ("POST", "PATCH"):
                body = await _body(request)
            query = dict(request.query)
            result = handler(_Req(account, tail, query, body, now))
        except AlpacaError as e:
            headers.update(e.headers)
            return _json(e.status, e.body(), headers)
        if isinstance(result, _Status):
            if result.body is None:
                return web.Response(status=result.status, headers=headers)
            return _json(result.status, result.body, headers)
        return _json(200, result, headers)

    def _authenticate(self, request: web.Request) -> str:
        key = request.headers.get("APCA-API-KEY-ID", "")
        secret = request.headers.get("APCA-API-SECRET-KEY", "")
        if not key or self._keys.get(key) != secret:
            raise unauthorized()
        return key

    # -- clock, account, assets ---------------------------------------------------------------

    def _clock_json(self, r: _Req) -> object:
        now = r.now
        return {
            "timestamp": rfc3339_et(now),
            "is_open": self._hours.is_open(now),
            "next_open": rfc3339_et(self._hours.next_open(now), fraction=False),
            "next_close": rfc3339_et(self._hours.next_close(now), fraction=False),
        }

    def _holding(self, account: str, asset: AssetSpec) -> Decimal:
        b = self._engine.balances(account).get(asset.spec.base)
        return _ZERO if b is None else b.free + b.locked

    def _parked_reserve(self, account: str) -> tuple[Decimal, dict[str, Decimal]]:
        """USD that parked buys would need, and quantity parked sells hold, per symbol."""
        usd = _ZERO
        held: dict[str, Decimal] = {}
        for order_id in self._open_ids:
            o = self._orders[order_id]
            if o.account != account or o.engine_cid is not None:
                continue
            if o.side == "buy":
                usd += self._estimate_cost(o)
            else:
                held[o.asset.symbol] = held.get(o.asset.symbol, _ZERO) + (o.remaining or _ZERO)
        return usd, held

    def _estimate_cost(self, o: Order) -> Decimal:
        if o.notional is not None:
            return o.notional - o.cost
        price = o.limit_price or o.stop_price or self._feed.price(o.asset)
        return (o.remaining or _ZERO) * price

    def _buying_power(self, account: str) -> Decimal:
        b = self._engine.balances(account).get("USD")
        free = _ZERO if b is None else b.free
        return max(_ZERO, free - self._parked_reserve(account)[0])

    def _account(self, r: _Req) -> object:
        account = r.account
        usd = self._engine.balances(account).get("USD")
        cash = _ZERO if usd is None else usd.free + usd.locked
        long_value = sum(
            (self._holding(account, a) * self._feed.price(a) for a in self._assets.values()), _ZERO
        )
        equity = money(cash + long_value)
        bp = self._buying_power(account)
        return {
            "id": self._account_ids[account],
            "account_number": self._account_numbers[account],
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "currency": "USD",
            "buying_power": dec(bp),
            "regt_buying_power": dec(bp),
            "daytrading_buying_power": "0",
            "non_marginable_buying_power": dec(bp),
            "options_buying_power": dec(bp),
            "cash": dec(cash),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": dec(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": rfc3339(0),
            "trade_suspended_by_user": False,
            "multiplier": "1",
            "shorting_enabled": False,
            "equity": dec(equity),
            "last_equity": dec(equity),
            "long_market_value": dec(money(long_value)),
            "short_market_value": "0",
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def _asset_json(self, a: AssetSpec) -> dict[str, object]:
        inst = self._engine.instrument(a.symbol)
        return {
            "id": a.asset_id,
            "class": a.asset_class,
            "exchange": a.exchange,
            "symbol": a.symbol,
            "name": a.name,
            "status": "active",
            "tradable": True,
            "marginable": False,
            "shortable": False,
            "easy_to_borrow": False,
            "fractionable": a.fractionable,
            "min_order_size": dec(inst.min_qty) if a.is_crypto else None,
            "min_trade_increment": dec(inst.step_size) if a.is_crypto else None,
            "price_increment": dec(inst.tick_size) if a.is_crypto else None,
            "maintenance_margin_requirement": 100,
            "attributes": ["fractional_eh_enabled"] if a.fractionable and not a.is_crypto else [],
        }

    def _list_assets(self, r: _Req) -> object:
        q = r.query
        status = q.get("status", "active")
        klass = q.get("asset_class")
        return [
            self._asset_json(a)
            for a in self._assets.values()
            if status == "active" and (klass is None or klass == a.asset_class)
        ]

    def _get_asset(self, r: _Req) -> object:
        tail = r.tail
        asset = self._by_alias.get(tail)
        if asset is None:
            raise not_found("asset")
        return self._asset_json(asset)

    def _activities(self, r: _Req) -> object:
        types = (
            [r.tail] if r.tail else [t for t in r.query.get("activity_types", "").split(",") if t]
        )
        return self._activities_log.query(r.account, types, r.query)

    def _calendar(self, r: _Req) -> object:
        first, last = self._hours.bounds
        start = date_param(r.query, "start") or first
        end = date_param(r.query, "end") or last
        out = []
        for s in self._hours.sessions(max(start, first), min(end, last)):
            out.append(
                {
                    "date": s.date.isoformat(),
                    "open": _et_clock(s.open_ns, "%H:%M"),
                    "close": _et_clock(s.close_ns, "%H:%M"),
                    "session_open": _et_clock(s.pre_ns, "%H%M"),
                    "session_close": _et_clock(s.post_ns, "%H%M"),
                }
            )
        return out

    # -- positions ----------------------------------------------------------------------------

    def _position_json(self, account: str, a: AssetSpec) -> dict[str, object] | None:
        qty = self._holding(account, a)
        if qty == 0:
            return None
        held_qty, cost = self._basis.get((account, a.symbol), (qty, qty * self._feed.price(a)))
        avg = cost / held_qty if held_qty else self._feed.price(a)
        price = self._feed.price(a)
        value = qty * price
        basis = qty * avg
        pl = value - basis
        b = self._engine.balances(account).get(a.spec.base)
        parked = self._parked_reserve(account)[1].get(a.symbol, _ZERO)
        available = (b.free if b else _ZERO) - parked
        return {
            "asset_id": a.asset_id,
            "symbol": a.position_symbol,
            "exchange": a.exchange,
            "asset_class": a.asset_class,
            "asset_marginable": False,
            "avg_entry_price": dec(money(avg)),
            "qty": dec(qty),
            "side": "long",
            "market_value": dec(money(value)),
            "cost_basis": dec(money(basis)),
            "unrealized_pl": dec(money(pl)),
            "unrealized_plpc": dec((pl / basis).quantize(Decimal("1e-6"))) if basis else "0",
            "unrealized_intraday_pl": dec(money(pl)),
            "unrealized_intraday_plpc": dec((pl / basis).quantize(Decimal("1e-6")))
            if basis
            else "0",
            "current_price": dec(price),
            "lastday_price": dec(price),
            "change_today": "0",
            "qty_available": dec(max(available, _ZERO)),
        }

    def _positions(self, r: _Req) -> object:
        account = r.account
        out = [self._position_json(account, a) for a in self._assets.values()]
        return [p for p in out if p is not None]

    def _position_asset(self, account: str, tail: str) -> AssetSpec:
        asset = self._by_alias.get(tail)
        if asset is None or self._holding(account, asset) == 0:
            raise AlpacaError(404, 40410000, "position does not exist")
        return asset

    def _get_position(self, r: _Req) -> object:
        account, tail = r.account, r.tail
        return self._position_json(account, self._position_asset(account, tail))

    def _close_position(self, r: _Req) -> object:
        account, tail, q, now = r.account, r.tail, r.query, r.now
        asset = self._position_asset(account, tail)
        available = self._engine.balances(account)[asset.spec.base].free
        available -= self._parked_reserve(account)[1].get(asset.symbol, _ZERO)
        qty = available
        if "qty" in q:
            qty = decimal_param(q["qty"], "qty")
        elif "percentage" in q:
            pct = decimal_param(q["percentage"], "percentage")
            step = self._engine.instrument(asset.symbol).step_size
            qty = (available * pct / 100 / step).to_integral_value(ROUND_DOWN) * step
        body = {
            "symbol": asset.symbol,
            "qty": str(qty),
            "side": "sell",
            "type": "market",
            "time_in_force": "gtc" if asset.is_crypto else "day",
        }
        return self._new_order(_Req(account, "", {}, body, now))

    def _close_all_positions(self, r: _Req) -> object:
        account, q, now = r.account, r.query, r.now
        if q.get("cancel_orders") == "true":
            self._cancel_all(_Req(account, "", {}, {}, now))
        out: list[dict[str, object]] = []
        for a in self._assets.values():
            if self._holding(account, a) == 0:
                continue
            try:
                order = self._close_position(_Req(account, a.symbol, {}, {}, now))
                out.append({"symbol": a.position_symbol, "status": 200, "body": order})
            except AlpacaError as e:
                out.append({"symbol": a.position_symbol, "status": e.status, "body": e.body()})
        return _Status(207, out)

    # -- orders: json -------------------------------------------------------------------------

    def _event(self, o: Order, event: str, ts: int, **extra: object) -> None:
        data: dict[str, object] = {"event": event, "timestamp": rfc3339(ts)}
        data.update(extra)
        data["order"] = order_json(o)
        self._updates.publish(o.account, data)

    # -- orders: validation -------------------------------------------------------------------

    def _new_order(self, r: _Req) -> object:
        account, body, now = r.account, r.body, r.now
        order = self._validate(account, body, now)
        self._check_funds(account, order)
        self._orders[order.id] = order
        self._by_client[(account, order.client_order_id)] = order.id
        self._open_ids[order.id] = None
        if not self._may_work(order, now):
            self._event(order, "accepted", now)
        self._progress(order, now)
        return order_json(order)

    def _validate(self, account: str, body: dict[str, Any], now: int) -> Order:
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise invalid("symbol is required")
        asset = self._by_alias.get(symbol)
        if asset is None:
            raise invalid(f'asset "{symbol}" not found')
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise invalid("side must be buy or sell")
        type_ = body.get("type", body.get("order_type"))
        if type_ == "trailing_stop":
            raise invalid("trailing_stop orders are not supported by this simulator")
        if type_ not in _TYPES:
            raise invalid(f"invalid order type: {type_}")
        tif = body.get("time_in_force")
        if tif not in _TIFS:
            raise invalid(f"invalid time_in_force: {tif}")
        if asset.is_crypto and tif not in _CRYPTO_TIFS:
            raise invalid(f"invalid crypto time_in_force: {tif}")
        order_class = body.get("order_class", "")
        if order_class not in ("", "simple", None):
            raise invalid(f"order_class {order_class} is not supported by this simulator")
        qty = opt_decimal(body, "qty")
        notional = opt_decimal(body, "notional")
        if (qty is None) == (notional is None):
            raise invalid("qty or notional is required, not both")
        inst = self._engine.instrument(asset.symbol)
        if qty is not None:
            if qty <= 0:
                raise invalid("qty must be > 0")
            if qty % inst.step_size != 0:
                if not asset.fractionable:
                    raise invalid(f"fractional orders are not supported for {asset.symbol}")
                raise invalid(f"qty must be a multiple of {dec(inst.step_size)}")
            if asset.is_crypto and qty < inst.min_qty:
                raise invalid(f"qty must be >= {dec(inst.min_qty)}")
        fractional = notional is not None or (qty is not None and qty % 1 != 0)
        if notional is not None:
            if notional <= 0:
                raise invalid("notional must be > 0")
            if type_ != "market":
                raise invalid("notional orders must be market orders")
            if not asset.fractionable:
                raise invalid(f"fractional orders are not supported for {asset.symbol}")
        if fractional and not asset.is_crypto and tif != "day":
            raise invalid("fractional orders must be DAY orders")
        limit = opt_decimal(body, "limit_price")
        stop = opt_decimal(body, "stop_price")
        if type_ in ("limit", "stop_limit") and limit is None:
            raise invalid("limit_price is required for limit orders")
        if type_ in ("stop", "stop_limit") and stop is None:
            raise invalid("stop_price is required for stop orders")
        if type_ in ("market", "stop") and limit is not None:
            raise invalid(f"limit_price must not be given for {type_} orders")
        if type_ in ("market", "limit") and stop is not None:
            raise invalid(f"stop_price must not be given for {type_} orders")
        for price in (limit, stop):
            if price is not None:
                if price <= 0:
                    raise invalid("price must be > 0")
                if price % inst.tick_size != 0:
                    raise invalid("sub-penny increment does not fulfill minimum pricing criteria")
        extended = body.get("extended_hours", False)
        if not isinstance(extended, bool):
            raise invalid("extended_hours must be a boolean")
        if extended and (type_ != "limit" or tif != "day"):
            raise invalid("extended hours order must be DAY limit orders")
        if extended and asset.is_crypto:
            raise invalid("extended_hours is not supported for crypto orders")
        client_id = body.get("client_order_id")
        if client_id is None or client_id == "":
            client_id = self._ids.uuid()
        if not isinstance(client_id, str) or len(client_id) > _MAX_CLIENT_ID:
            raise invalid(f"client_order_id must be no more than {_MAX_CLIENT_ID} characters")
        if (account, client_id) in self._by_client:
            raise invalid("client_order_id must be unique")
        order = Order(
            id=self._ids.uuid(),
            client_order_id=client_id,
            account=account,
            asset=asset,
            side=str(side),
            type=str(type_),
            tif=str(tif),
            qty=qty,
            notional=notional,
            limit_price=limit,
            stop_price=stop,
            extended_hours=extended,
            created_ns=now,
            updated_ns=now,
        )
        if not asset.is_crypto:
            self._schedule(order, now)
        return order

    def _schedule(self, o: Order, now: int) -> None:
        """When an equity order may work, and when it ends."""
        hours = self._hours
        today = hours.today(now)
        if o.tif in ("opg", "cls"):
            if o.type not in ("market", "limit"):
                raise invalid(f"{o.tif} orders must be market or limit orders")
            if o.tif == "opg":
                cutoff = today.open_ns - _OPG_CUTOFF_NS if today else None
                fire = hours.next_open(now)
            else:
                cutoff = today.close_ns - _CLS_CUTOFF_NS if today else None
                fire = hours.next_close(now)
            if (
                today is not None
                and cutoff is not None
                and cutoff <= now < today.close_ns + _REOPEN_NS
            ):
                raise invalid(
                    f"{o.tif} orders are not accepted between "
                    f"{'09:28' if o.tif == 'opg' else '15:50'} and 19:00 ET"
                )
            o.fire_ns = fire
            o.start_ns = fire
            return
        session = hours.next_session(now, extended=o.extended_hours)
        o.start_ns = session.pre_ns if o.extended_hours else session.open_ns
        if o.tif == "day":
            o.expires_ns = session.post_ns if o.extended_hours else session.close_ns

    def _check_funds(self, account: str, o: Order) -> None:
        inst = self._engine.instrument(o.asset.symbol)
        if o.side == "buy":
            cost = self._estimate_cost(o)
            if o.type == "market" and o.notional is None:
                _bid, ask = self._engine.top_of_book(o.asset.symbol)
                cost = (o.qty or _ZERO) * (ask.price if ask else self._feed.price(o.asset))
            bp = self._buying_power(account)
            if cost > bp:
                raise forbidden_balance(
                    "insufficient buying power",
                    {"buying_power": dec(bp), "cost_basis": dec(money(cost))},
                )
            return
        b = self._engine.balances(account).get(inst.base)
        free = _ZERO if b is None else b.free
        held = self._parked_reserve(account)[1].get(o.asset.symbol, _ZERO)
        available = free - held
        requested = o.qty
        if requested is None:  # a notional sell: its size at the current price
            requested = (o.notional or _ZERO) / self._feed.price(o.asset)
        if requested > available:
            owned = self._holding(account, o.asset)
            if o.asset.is_crypto:
                raise forbidden_balance(
                    f"insufficient balance for {inst.base} (requested: {dec(requested)}, "
                    f"available: {dec(available)})",
                    {"available": dec(available), "balance": dec(owned), "symbol": inst.base},
                )
            raise forbidden_balance(
                f"insufficient qty available for order (requested: {dec(requested)}, "
                f"available: {dec(available)})",
                {
                    "available": dec(available),
                    "existing_qty": dec(owned),
                    "held_for_orders": dec(owned - available),
                    "symbol": o.asset.symbol,
                },
            )

    # -- orders: life cycle -------------------------------------------------------------------

    def _may_work(self, o: Order, ts: int) -> bool:
        if o.asset.is_crypto:
            return True
        if ts < o.start_ns:
            return False
        if o.fire_ns is not None:
            return True
        phase = self._hours.phase(ts)
        if o.extended_hours:
            return phase is not Phase.CLOSED
        return phase is Phase.REGULAR

    def _progress(self, o: Order, ts: int) -> None:
        """Bring one open order in line with the time: expire, park, trigger or release."""
        if not o.is_open:
            return
        if o.expires_ns is not None and ts >= o.expires_ns:
            self._pull(o)
            self._finish(o, "expired", ts)
            self._event(o, "expired", ts)
            return
        may = self._may_work(o, ts)
        if o.engine_cid is not None:
            if not may:
                self._pull(o)
            return
        if not may:
            return
        if o.type in ("stop", "stop_limit") and not o.triggered:
            if not o.announced:
                self._announce(o, ts)
            last = self._feed.last(o.asset.symbol)
            stop = o.stop_price
            assert stop is not None
            if last is None or (last < stop if o.side == "buy" else last > stop):
                return
            o.triggered = True
        self._release(o, ts)

    def _announce(self, o: Order, ts: int) -> None:
        o.announced = True
        o.status = "new"
        o.updated_ns = ts
        self._event(o, "new", ts)

    def _release(self, o: Order, ts: int) -> None:
        inst = self._engine.instrument(o.asset.symbol)
        market = o.type in ("market", "stop")
        _bid, ask = self._engine.top_of_book(o.asset.symbol)
        if o.notional is not None:
            price = ask.price if ask is not None and o.side == "buy" else self._feed.price(o.asset)
            units = (o.notional - o.cost) / price / inst.step_size
            qty = units.to_integral_value(ROUND_DOWN) * inst.step_size
            o.qty = None
        else:
            assert o.remaining is not None
            qty = o.remaining
        if o.tif in ("opg", "cls", "ioc") or market:
            tif = TimeInForce.IOC
        elif o.tif == "fok":
            tif = TimeInForce.FOK
        else:
            tif = TimeInForce.GTC
        if not o.announced:
            self._announce(o, ts)
        if qty <= 0:
            self._finish(o, "canceled", ts)
            self._event(o, "canceled", ts)
            return
        o.generation += 1
        cid = f"{o.id}#{o.generation}"
        o.engine_cid = cid
        self._by_engine[cid] = o
        result = self._engine.submit(
            o.account,
            client_order_id=cid,
            symbol=o.asset.symbol,
            side=Side(o.side),
            type=OrderType.MARKET if market else OrderType.LIMIT,
            qty=qty,
            price=None if market else o.limit_price,
            tif=tif,
            post_only=False,
            ts=ts,
        )
        mine = [r.report for r in result.reports if r.report.client_order_id == cid]
        if mine and mine[0].status is OrderStatus.REJECTED:
            self._by_engine.pop(cid, None)
            o.engine_cid = None
            o.failed_ns = ts
            self._finish(o, "rejected", ts)
            self._event(o, "rejected", ts)
            return
        if o.notional is not None:
            # Alpaca shows notional orders with their notional only; the engine size is ours.
            o.qty = None
        self._after_engine(o.asset, result, ts, quote=False)

    def _pull(self, o: Order) -> None:
        """Take a working order out of the engine (its funds come back); it stays open."""
        cid = o.engine_cid
        if cid is None:
            return
        o.engine_cid = None
        self._by_engine.pop(cid, None)
        ts = self._clock.time_ns()
        result = self._engine.cancel(o.account, o.asset.symbol, cid, ts)
        self._after_engine(o.asset, result, ts, quote=False)

    def _finish(self, o: Order, status: str, ts: int) -> None:
        self._open_ids.pop(o.id, None)
        o.status = status
        o.updated_ns = ts
        if status == "filled":
            o.filled_ns = ts
        elif status == "canceled":
            o.canceled_ns = ts
        elif status == "expired":
            o.expired_ns = ts
        if o.engine_cid is not None:
            self._by_engine.pop(o.engine_cid, None)
            o.engine_cid = None

    def _housekeeping(self, ts: int) -> None:
        for order_id in list(self._open_ids):
            self._progress(self._orders[order_id], ts)

    # -- engine results -----------------------------------------------------------------------

    def _after_engine(
        self, asset: AssetSpec, result: EngineResult, ts: int, *, quote: bool
    ) -> None:
        for item in result.reports:
            r = item.report
            o = self._by_engine.get(r.client_order_id)
            if o is None or item.account != o.account:
                continue
            if r.last_qty > 0:
                self._fill(o, r.last_qty, r.last_price, r.status is OrderStatus.FILLED, ts)
            elif r.status is OrderStatus.EXPIRED:
                self._finish(o, "canceled", ts)
                self._event(o, "canceled", ts)
        self._feed.publish(asset, result.trades, ts, quote=quote)

    def _fill(self, o: Order, qty: Decimal, price: Decimal, done: bool, ts: int) -> None:
        o.filled_qty += qty
        o.cost += qty * price
        key = (o.account, o.asset.symbol)
        held, cost = self._basis.get(key, (_ZERO, _ZERO))
        if o.side == "buy":
            held, cost = held + qty, cost + qty * price
        else:
            avg = cost / held if held else _ZERO
            held, cost = held - qty, cost - avg * qty
            if held <= 0:
                held, cost = _ZERO, _ZERO
        self._basis[key] = (held, cost)
        if done:
            self._finish(o, "filled", ts)
        else:
            o.status = "partially_filled"
            o.updated_ns = ts
        execution_id = self._ids.uuid()
        self._activities_log.record(o, qty, price, done, ts, execution_id)
        self._event(
            o,
            "fill" if done else "partial_fill",
            ts,
            execution_id=execution_id,
            price=dec(price),
            qty=dec(qty),
            position_qty=dec(held),  # after this fill, not after the whole engine call
        )

    # -- orders: queries, replace, cancel -------------------------------------------------------

    def _owned(self, account: str, order_id: str) -> Order:
        o = self._orders.get(order_id)
        if o is None or o.account != account:
            raise not_found()
        return o

    def _get_order(self, r: _Req) -> object:
        account, tail = r.account, r.tail
        return order_json(self._owned(account, tail))

    def _by_client_id(self, r: _Req) -> object:
        account, q = r.account, r.query
        found = self._by_client.get((account, q.get("client_order_id", "")))
        if found is None:
            raise not_found()
        return order_json(self._orders[found])

    def _list_orders(self, r: _Req) -> object:
        account, q = r.account, r.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise invalid(f"invalid status: {status}")
        raw_limit = q.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
            raise invalid("limit must be between 1 and 500")
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction: {direction}")
        after = time_param(q, "after")
        until = time_param(q, "until")
        symbols = {s for s in q.get("symbols", "").split(",") if s}
        side = q.get("side")
        chosen = []
        for o in self._orders.values():
            if o.account != account:
                continue
            if (status == "open" and not o.is_open) or (status == "closed" and o.is_open):
                continue
            if after is not None and o.created_ns <= after:
                continue
            if until is not None and o.created_ns >= until:
                continue
            if symbols and o.asset.symbol not in symbols and o.asset.position_symbol not in symbols:
                continue
            if side is not None and o.side != side:
                continue
            chosen.append(o)
        if direction == "desc":
            chosen.reverse()
        return [order_json(o) for o in chosen[: int(raw_limit)]]

    def _cancel_order(self, r: _Req) -> object:
        account, tail, now = r.account, r.tail, r.now
        o = self._owned(account, tail)
        if not o.is_open:
            raise not_cancelable(o.status)
        self._cancel(o, now)
        return _Status(204, None)

    def _cancel(self, o: Order, now: int) -> None:
        self._pull(o)
        self._finish(o, "canceled", now)
        self._event(o, "canceled", now)

    def _cancel_all(self, r: _Req) -> object:
        account, now = r.account, r.now
        out: list[dict[str, object]] = []
        for order_id in list(self._open_ids):
            o = self._orders[order_id]
            if o.account == account:
                self._cancel(o, now)
                out.append({"id": o.id, "status": 200, "body": order_json(o)})
        return _Status(207, out)

    def _replace_order(self, r: _Req) -> object:
        account, tail, body, now = r.account, r.tail, r.body, r.now
        old = self._owned(account, tail)
        if not old.is_open:
            raise not_cancelable(old.status)
        if old.notional is not None:
            raise invalid("notional orders cannot be replaced")
        if body.get("trail") is not None:
            raise invalid("trail is only for trailing_stop orders")
        assert old.remaining is not None
        qty = opt_decimal(body, "qty")
        limit = opt_decimal(body, "limit_price")
        stop = opt_decimal(body, "stop_price")
        if limit is not None and old.type not in ("limit", "stop_limit"):
            raise invalid("limit_price is only for limit orders")
        if stop is not None and old.type not in ("stop", "stop_limit"):
            raise invalid("stop_price is only for stop orders")
        new_body: dict[str, Any] = {
            "symbol": old.asset.symbol,
            "side": old.side,
            "type": old.type,
            "time_in_force": body.get("time_in_force") or old.tif,
            "qty": str(qty if qty is not None else old.remaining),
            "extended_hours": old.extended_hours,
            "client_order_id": body.get("client_order_id") or None,
        }
        if old.type in ("limit", "stop_limit"):
            new_body["limit_price"] = str(limit if limit is not None else old.limit_price)
        if old.type in ("stop", "stop_limit"):
            new_body["stop_price"] = str(stop if stop is not None else old.stop_price)
        new = self._validate(account, new_body, now)
        self._pull(old)  # its funds come back before the new order is checked
        try:
            self._check_funds(account, new)
        except AlpacaError:
            self._progress(old, now)
            raise
        self._finish(old, "replaced", now)
        old.replaced_ns = now
        old.replaced_by = new.id
        new.replaces = old.id
        new.triggered = old.triggered
        self._orders[new.id] = new
        self._open_ids[new.id] = None
        self._by_client[(account, new.client_order_id)] = new.id
        self._event(old, "replaced", now)
        self._progress(new, now)
        return order_json(new)


@dataclass(frozen=True, slots=True)
class _Req:
    account: str
    tail: str  # the path after a prefix route, e.g. the order id
    query: dict[str, str]
    body: dict[str, Any]
    now: int


@dataclass(frozen=True, slots=True)
class _Status:
    status: int
    body: object


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=dumps(body), content_type="application/json", headers=headers
    )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.text()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AlpacaError(400, 40010000, "request body format is invalid")
    return body


def _et_clock(ns: int, fmt: str) -> str:
    return dt.datetime.fromtimestamp(ns / 1_000_000_000, ET).strftime(fmt)

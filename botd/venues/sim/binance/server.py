"""The Binance Spot protocol simulator: ``/api/v3`` REST on loopback over the matching engine.

One engine account per API key; the synthetic market moves the book from a task stepped on the
injected clock, so everything is deterministic given the seed, the clock and the requests.

The engine knows orders in domain terms; Binance's own fields (integer ids, type LIMIT_MAKER,
timeInForce, creation and update times, cumulative quote) are kept here in ``_Order`` records
that follow the engine's reports, including fills that happen during a market step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import web

from botd.clock import Clock
from botd.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim.binance.auth import (
    ApiKey,
    check_timestamp,
    merge_params,
    payload_without_signature,
)
from botd.venues.sim.binance.errors import (
    DECIMAL_RANGE,
    BinanceError,
    bad_symbol,
    illegal_chars,
    mandatory,
    not_required,
)
from botd.venues.sim.binance.faults import (
    ReorderingSink,
    WireFaultPlan,
    drop_request,
    http_fault_response,
)
from botd.venues.sim.binance.klines import KlineBook
from botd.venues.sim.binance.limits import RateLimitConfig, RateLimiter
from botd.venues.sim.binance.marketdata import (
    LastTrade,
    avg_price_json,
    klines_json,
    price_json,
    ticker_24hr_json,
)
from botd.venues.sim.binance.streams import StreamConfig, StreamHub, taker_orders
from botd.venues.sim.binance.userdata import UserEvents
from botd.venues.sim.binance.wsapi import WsApi
from botd.venues.sim.binance.wsconn import ConnectAttempts
from botd.venues.sim.engine import EngineResult, MatchingEngine
from botd.venues.sim.market import MarketGenerator, SymbolSpec, default_instruments

__all__ = ["ApiKey", "BinanceSimulator", "RateLimitConfig", "StreamConfig"]

_ZERO = Decimal(0)
_NS_PER_MS = 1_000_000
_DECIMAL_RE = re.compile(DECIMAL_RANGE)
_INT_RANGE = "^[0-9]{1,20}$"
_CLIENT_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CLIENT_ID_RE = re.compile(_CLIENT_ID_RANGE)
_ASSET_DECIMALS = 8  # every asset of the simulated venue has Binance's usual 8 decimals
_MAX_PRICE = Decimal("1000000")
_MAX_QTY = Decimal("9000")
_MAX_NOTIONAL = Decimal("9000000")
_LIMIT_STATUSES = (429, 418)  # refused by the rate limiter, before anything was processed
_AVG_PRICE_MINS = 5
_OPEN = ("NEW", "PARTIALLY_FILLED")
_STATUS = {
    OrderStatus.ACCEPTED: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
}
_UNSUPPORTED_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
_SIGNED_METHODS_WITH_BODY = ("POST", "PUT", "DELETE")


def _fmt(value: Decimal) -> str:
    return f"{value:.{_ASSET_DECIMALS}f}"


@dataclass(slots=True)
class _Order:
    order_id: int
    account: str
    symbol: str
    client_order_id: str
    side: str
    type: str
    tif: str
    price: Decimal  # 0 for MARKET, as Binance shows it
    orig_qty: Decimal
    orig_quote_qty: Decimal  # quoteOrderQty of a MARKET order, else 0
    time_ms: int
    update_ms: int
    executed: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    status: str = "NEW"
    working: bool = False  # it rested on the book at some point


@dataclass(frozen=True, slots=True)
class _Terms:
    """A new order's parameters once validated."""

    side: str
    type: str
    tif: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    resp_type: str
    client_id: str


@dataclass(frozen=True, slots=True)
class _Fill:
    symbol: str
    trade_id: int
    order_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool


@dataclass(slots=True)
class _Req:
    params: dict[str, str]
    now_ms: int
    account: str = ""
    headers: dict[str, str] = field(default_factory=dict)


_Handler = Callable[[_Req], object]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: _Handler
    weight: Callable[[dict[str, str]], int]
    signed: bool


def _fixed(weight: int) -> Callable[[dict[str, str]], int]:
    return lambda _params: weight


def _depth_weight(params: dict[str, str]) -> int:
    raw = params.get("limit", "100")
    limit = int(raw) if raw.isdigit() else 100
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    return 50 if limit <= 1000 else 250


def _ticker_weight(params: dict[str, str]) -> int:
    """``ticker/24hr``: 2 for one symbol or up to 20 listed, 40 up to 100, else 80."""
    if "symbol" in params:
        return 2
    if "symbols" not in params:
        return 80
    count = params["symbols"].count(",") + 1
    return 2 if count <= 20 else 40 if count <= 100 else 80


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BinanceSimulator:
    """``api_keys`` maps each API key to its HMAC secret or an :class:`ApiKey` (HMAC or
    Ed25519); ``balances`` maps an API key to the starting balances of its account (a key not
    listed starts empty)."""

    def __init__(
        self,
        *,
        clock: Clock,
        seed: int,
        symbols: Sequence[str | SymbolSpec],
        api_keys: Mapping[str, str | ApiKey],
        balances: Mapping[str, Mapping[str, Decimal]] | None = None,
        maker_fee: Decimal = Decimal("0.001"),
        taker_fee: Decimal = Decimal("0.001"),
        step_rate: float = 10.0,
        limits: RateLimitConfig | None = None,
        streams: StreamConfig | None = None,
        venue: str = "binance",
        faults: WireFaultPlan | None = None,
    ) -> None:
        known = default_instruments(venue)
        specs: list[SymbolSpec] = []
        for s in symbols:
            if isinstance(s, SymbolSpec):
                specs.append(s)
            elif s in known:
                specs.append(known[s])
            else:
                raise ValueError(f"the simulator does not list {s}; it lists {sorted(known)}")
        if step_rate <= 0:
            raise ValueError("step_rate must be positive")
        self._clock = clock
        self._seed = seed
        self._specs = specs
        self._instruments: dict[str, Instrument] = {s.symbol: s.instrument(venue) for s in specs}
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee
        self._engine = MatchingEngine(
            venue, self._instruments.values(), maker_fee=maker_fee, taker_fee=taker_fee
        )
        self._keys = {
            k: v if isinstance(v, ApiKey) else ApiKey.hmac(v) for k, v in api_keys.items()
        }
        for key in self._keys:
            self._engine.open_account(key, (balances or {}).get(key, {}))
        self._market = MarketGenerator(self._engine, specs, seed=seed)
        self._interval = 1.0 / step_rate
        self._limiter = RateLimiter(limits or RateLimitConfig())
        self._orders: dict[int, _Order] = {}
        self._by_client: dict[tuple[str, str, str], int] = {}  # (account, symbol, cid) -> id
        self._fills: dict[str, list[_Fill]] = {key: [] for key in self._keys}
        self._update_ids = {s.symbol: 0 for s in specs}
        self._id_seq = 0
        self._klines = KlineBook()  # every public trade, for klines, tickers and avgPrice
        self._last_trades: dict[str, LastTrade] = {}
        self._runner: web.AppRunner | None = None
        self._stepper: asyncio.Task[None] | None = None
        self._routes = self._route_table()
        self._faults = faults  # see faults.py; None: a well-behaved venue
        self._stopping = asyncio.Event()  # releases requests a ``timeout=hang`` fault holds
        ws_cfg = streams or StreamConfig()
        # Streams and WS API connections count against one per-IP attempt window.
        attempts = ConnectAttempts(ws_cfg.max_connects, ws_cfg.connect_window)
        self._hub = StreamHub(
            self._instruments,
            depth=self._engine.depth,
            update_id=self._update_ids.__getitem__,
            now_ms=self._now_ms,
            config=streams,
            clock=clock,
            klines=self._klines,
            faults=faults,
            attempts=attempts,
        )
        self._wsapi = WsApi(
            keys=self._keys,
            limiter=self._limiter,
            now_ms=self._now_ms,
            call_rest=self._call_rest,
            rest_weight=lambda verb, path, params: self._routes[(verb, path)].weight(params),
            rest_routes=self._routes.keys(),
            config=ws_cfg,
            clock=clock,
            attempts=attempts,
            faults=faults,
        )
        self._user = UserEvents(
            assets=lambda symbol: (self._instruments[symbol].base, self._instruments[symbol].quote),
            balances=self._engine.balances,
            sink=ReorderingSink(self._wsapi, faults, self._now_ms) if faults else self._wsapi,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def engine(self) -> MatchingEngine:
        return self._engine

    @property
    def klines(self) -> KlineBook:
        """The bars of every public trade (REST klines and the kline streams read them)."""
        return self._klines

    @property
    def streams(self) -> StreamHub:
        """The market-data stream server (e.g. ``announce_shutdown()``)."""
        return self._hub

    @property
    def ws_api(self) -> WsApi:
        """The WebSocket API server (e.g. ``announce_shutdown()``)."""
        return self._wsapi

    @property
    def faults(self) -> WireFaultPlan | None:
        return self._faults

    def _now_ns(self) -> int:
        """The server's clock: the injected clock plus any ``skew`` fault in force."""
        now = self._clock.time_ns()
        if self._faults is not None:
            now += self._faults.skew_ms(now // _NS_PER_MS) * _NS_PER_MS
        return now

    def _now_ms(self) -> int:
        return self._now_ns() // _NS_PER_MS

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host`` (loopback only) and return the port."""
        if not _loopback(host):
            raise ValueError(f"the simulator listens on loopback only, not {host!r}")
        if self._runner is not None:
            raise RuntimeError("already started")
        if self._faults is not None:
            self._faults.bind(self._clock.time_ns() // _NS_PER_MS)
        self._stopping.clear()
        self.step()  # a book from the first request on
        app = web.Application()
        self._hub.add_routes(app)  # before the catch-all REST route
        self._wsapi.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()  # e.g. the port is taken: leave nothing half-open
            raise
        self._runner = runner
        self._stepper = asyncio.create_task(self._run_market())
        address = runner.addresses[0]
        return int(address[1])

    async def stop(self) -> None:
        self._stopping.set()
        if self._stepper is not None:
            self._stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stepper
            self._stepper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def step(self) -> None:
        """Move every symbol's market one step at the clock's time."""
        ts = self._now_ns()
        for spec in self._specs:
            result, _ = self._market.step(spec.symbol, ts)
            self._apply(result, ts // _NS_PER_MS)
            self._update_ids[spec.symbol] += 1
            self._record_trades(result)
            takers = taker_orders(result.reports)
            self._hub.publish(spec.symbol, result.trades, quote=True, takers=takers)

    def deposit(self, api_key: str, asset: str, amount: Decimal) -> None:
        """Credit (``amount`` > 0) or debit the account of ``api_key`` outside trading, as a
        deposit or withdrawal would; subscribers get ``balanceUpdate`` and the new position."""
        self._engine.deposit(api_key, asset, amount)
        now_ms = self._now_ms()
        self._user.balance_update(api_key, asset, amount, now_ms)
        self._user.flush(now_ms)

    async def _run_market(self) -> None:
        while True:
            await self._clock.sleep(self._interval)
            self.step()

    # -- dispatch -----------------------------------------------------------------------------

    def _route_table(self) -> dict[tuple[str, str], _Route]:
        def r(handler: _Handler, weight: Callable[[dict[str, str]], int], signed: bool) -> _Route:
            return _Route(handler, weight, signed)

        p = "/api/v3"
        return {
            ("GET", f"{p}/ping"): r(lambda _req: {}, _fixed(1), False),
            ("GET", f"{p}/time"): r(lambda req: {"serverTime": req.now_ms}, _fixed(1), False),
            ("GET", f"{p}/exchangeInfo"): r(self._exchange_info, _fixed(20), False),
            ("GET", f"{p}/depth"): r(self._depth, _depth_weight, False),
            ("GET", f"{p}/ticker/bookTicker"): r(
                self._book_ticker, lambda q: 2 if "symbol" in q else 4, False
            ),
            ("GET", f"{p}/klines"): r(self._klines_rest, _fixed(2), False),
            ("GET", f"{p}/uiKlines"): r(self._klines_rest, _fixed(2), False),
            ("GET", f"{p}/ticker/24hr"): r(self._ticker_24hr, _ticker_weight, False),
            ("GET", f"{p}/ticker/price"): r(
                self._ticker_price, lambda q: 2 if "symbol" in q else 4, False
            ),
            ("GET", f"{p}/avgPrice"): r(self._avg_price, _fixed(2), False),
            ("POST", f"{p}/order"): r(self._new_order, _fixed(1), True),
            ("POST", f"{p}/order/test"): r(
                self._test_order,
                lambda q: 20 if q.get("computeCommissionRates") == "true" else 1,
                True,
            ),
            ("GET", f"{p}/order"): r(self._query_order, _fixed(4), True),
            ("DELETE", f"{p}/order"): r(self._cancel_order, _fixed(1), True),
            ("GET", f"{p}/openOrders"): r(
                self._open_orders, lambda q: 6 if "symbol" in q else 80, True
            ),
            ("DELETE", f"{p}/openOrders"): r(self._cancel_open_orders, _fixed(1), True),
            ("GET", f"{p}/allOrders"): r(self._all_orders, _fixed(20), True),
            ("GET", f"{p}/account"): r(self._account, _fixed(20), True),
            ("GET", f"{p}/myTrades"): r(
                self._my_trades, lambda q: 5 if "orderId" in q else 20, True
            ),
            ("GET", f"{p}/rateLimit/order"): r(self._order_rate_limits, _fixed(40), True),
        }

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route = self._routes.get((request.method, request.path))
        if route is None:
            known = any(path == request.path for _, path in self._routes)
            return web.Response(status=405 if known else 404)
        now_ms = self._now_ms()
        faults = self._faults
        fault = faults.on_rest(request.method, request.path, now_ms) if faults else None
        if fault is not None and fault.is_http and not fault.after:
            return http_fault_response(fault)  # refused before anything happened
        ip = request.remote or "unknown"
        query = request.rel_url.raw_query_string
        body = await request.text() if request.method in _SIGNED_METHODS_WITH_BODY else ""
        req = _Req(merge_params(query, body), now_ms)
        status = 200
        payload: object
        headers: dict[str, str] = {}
        try:
            self._limiter.charge_weight(ip, route.weight(req.params), now_ms)
            if route.signed:
                req.account = self._authenticate(request, req.params, query, body, now_ms)
            payload = route.handler(req)
            headers.update(req.headers)
        except BinanceError as e:
            status, payload = e.status, {"code": e.code, "msg": e.msg}
            headers.update(e.headers)
        headers["X-MBX-USED-WEIGHT-1M"] = str(self._limiter.used_weight(ip, now_ms))
        if fault is not None and status not in _LIMIT_STATUSES:
            # A request the rate limiter refused was not processed: its 429/418 goes out as it
            # is (a ban counts the 429s answered, and a 5xx in its place would hide one).
            if fault.is_http:
                return http_fault_response(fault)  # processed, then a 5xx: status unknown
            if status == 200:  # ``timeout``: accepted, then never answered
                await drop_request(request, fault, self._stopping)
        return web.Response(
            status=status,
            text=json.dumps(payload, separators=(",", ":")),
            content_type="application/json",
            headers=headers,
        )

    def _authenticate(
        self, request: web.Request, params: dict[str, str], query: str, body: str, now_ms: int
    ) -> str:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", status=401)
        spec = self._keys.get(key)
        if spec is None:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        check_timestamp(params, now_ms)
        payload, signature = payload_without_signature(query, body)
        if not signature:
            raise mandatory("signature")
        if not spec.verify(payload, signature):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        return key

    def _call_rest(
        self, verb: str, path: str, params: dict[str, str], account: str, now_ms: int
    ) -> object:
        """Run a REST route's handler on parameters already authenticated (the WS API's way
        in, so that both APIs share one implementation)."""
        return self._routes[(verb, path)].handler(_Req(params, now_ms, account))

    # -- parameters ---------------------------------------------------------------------------

    def _symbol(self, params: dict[str, str]) -> Instrument:
        name = params.get("symbol", "")
        if not name:
            raise mandatory("symbol")
        inst = self._instruments.get(name)
        if inst is None:
            raise bad_symbol()
        return inst

    def _symbols(self, params: dict[str, str]) -> list[Instrument]:
        """``symbol=X`` or ``symbols=["X","Y"]``, or every symbol when neither is sent."""
        if "symbol" in params:
            return [self._symbol(params)]
        if "symbols" in params:
            try:
                names = json.loads(params["symbols"])
            except ValueError:
                raise mandatory("symbols") from None
            if not isinstance(names, list) or not names:
                raise mandatory("symbols")
            out = []
            for name in names:
                inst = self._instruments.get(name) if isinstance(name, str) else None
                if inst is None:
                    raise bad_symbol()
                out.append(inst)
            return out
        return list(self._instruments.values())

    @staticmethod
    def _decimal(params: dict[str, str], name: str) -> Decimal:
        raw = params.get(name, "")
        if not raw:
            raise mandatory(name)
        if not _DECIMAL_RE.match(raw):
            raise illegal_chars(name, DECIMAL_RANGE)
        value = Decimal(raw)
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > _ASSET_DECIMALS:
            raise BinanceError(-1111, f"Parameter '{name}' has too much precision.")
        return value

    @staticmethod
    def _int(params: dict[str, str], name: str) -> int | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        if not raw.isdigit() or len(raw) > 20:
            raise illegal_chars(name, _INT_RANGE)
        return int(raw)

    def _new_client_id(self) -> str:
        """Binance makes 22 alphanumeric characters; ours are derived from the seed and a
        counter so that a replayed run hands out the same ids."""
        self._id_seq += 1
        digest = hashlib.blake2b(f"{self._seed}/{self._id_seq}".encode(), digest_size=16)
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        n = int.from_bytes(digest.digest(), "big")
        chars = []
        for _ in range(22):
            n, rem = divmod(n, 62)
            chars.append(alphabet[rem])
        return "".join(chars)

    def _client_id_param(self, params: dict[str, str], name: str) -> str:
        raw = params.get(name, "")
        if not raw:
            return self._new_client_id()
        if not _CLIENT_ID_RE.match(raw):
            raise illegal_chars(name, _CLIENT_ID_RANGE)
        return raw

    # -- public endpoints ---------------------------------------------------------------------

    def _symbol_info(self, inst: Instrument) -> dict[str, object]:
        return {
            "symbol": inst.symbol,
            "status": "TRADING",
            "baseAsset": inst.base,
            "baseAssetPrecision": _ASSET_DECIMALS,
            "quoteAsset": inst.quote,
            "quotePrecision": _ASSET_DECIMALS,
            "quoteAssetPrecision": _ASSET_DECIMALS,
            "baseCommissionPrecision": _ASSET_DECIMALS,
            "quoteCommissionPrecision": _ASSET_DECIMALS,
            # Only what the simulator executes is advertised, so clients do not try the rest.
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "pegInstructionsAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _fmt(inst.tick_size),
                    "maxPrice": _fmt(_MAX_PRICE),
                    "tickSize": _fmt(inst.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _fmt(inst.min_qty),
                    "maxQty": _fmt(self._max_qty(inst)),
                    "stepSize": _fmt(inst.step_size),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": _fmt(inst.min_qty),
                    "maxQty": _fmt(self._max_qty(inst)),
                    "stepSize": _fmt(inst.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _fmt(inst.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": _fmt(_MAX_NOTIONAL),
                    "applyMaxToMarket": False,
                    "avgPriceMins": _AVG_PRICE_MINS,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    @staticmethod
    def _max_qty(inst: Instrument) -> Decimal:
        return inst.max_qty if inst.max_qty is not None else _MAX_QTY

    def _exchange_info(self, req: _Req) -> object:
        return {
            "timezone": "UTC",
            "serverTime": req.now_ms,
            "rateLimits": self._limiter.config.rate_limits_json(),
            "exchangeFilters": [],
            "symbols": [self._symbol_info(i) for i in self._symbols(req.params)],
        }

    def _depth(self, req: _Req) -> object:
        inst = self._symbol(req.params)
        limit = self._int(req.params, "limit")
        levels = min(max(limit if limit is not None else 100, 1), 5000)
        bids, asks = self._engine.depth(inst.symbol, levels)
        return {
            "lastUpdateId": self._update_ids[inst.symbol],
            "bids": [[_fmt(b.price), _fmt(b.size)] for b in bids],
            "asks": [[_fmt(a.price), _fmt(a.size)] for a in asks],
        }

    def _book_ticker(self, req: _Req) -> object:
        out = []
        for inst in self._symbols(req.params):
            bid, ask = self._engine.top_of_book(inst.symbol)
            out.append(
                {
                    "symbol": inst.symbol,
                    "bidPrice": _fmt(bid.price if bid else _ZERO),
                    "bidQty": _fmt(bid.size if bid else _ZERO),
                    "askPrice": _fmt(ask.price if ask else _ZERO),
                    "askQty": _fmt(ask.size if ask else _ZERO),
                }
            )
        return out[0] if "symbol" in req.params else out

    def _record_trades(self, result: EngineResult) -> None:
        """Count ``result``'s public trades in the kline book and the last-trade record."""
        for t in result.trades:
            time_ms = t.ts_event // _NS_PER_MS
            self._klines.add_trade(
                t.symbol,
                trade_id=int(t.trade_id),
                price=t.price,
                qty=t.size,
                buyer_is_taker=t.side is Side.BUY,
                time_ms=time_ms,
            )
            self._last_trades[t.symbol] = LastTrade(t.price, t.size, time_ms)

    def _klines_rest(self, req: _Req) -> object:
        inst = self._symbol(req.params)
        return klines_json(self._klines, inst.symbol, req.params, req.now_ms)

    def _ticker_24hr(self, req: _Req) -> object:
        type_ = req.params.get("type", "FULL")
        if type_ not in ("FULL", "MINI"):
            raise BinanceError(-1130, "Invalid data sent for a parameter.")
        out = []
        for inst in self._symbols(req.params):
            bid, ask = self._engine.top_of_book(inst.symbol)
            out.append(
                ticker_24hr_json(
                    self._klines,
                    inst.symbol,
                    last=self._last_trades.get(inst.symbol),
                    bid=(bid.price, bid.size) if bid else None,
                    ask=(ask.price, ask.size) if ask else None,
                    now_ms=req.now_ms,
                    mini=type_ == "MINI",
                )
            )
        return out[0] if "symbol" in req.params else out

    def _ticker_price(self, req: _Req) -> object:
        last = self._last_trades
        out = [price_json(i.symbol, last.get(i.symbol)) for i in self._symbols(req.params)]
        return out[0] if "symbol" in req.params else out

    def _avg_price(self, req: _Req) -> object:
        inst = self._symbol(req.params)
        last = self._last_trades.get(inst.symbol)
        return avg_price_json(self._klines, inst.symbol, last, req.now_ms)

    # -- orders -------------------------------------------------------------------------------

    def _validate_order(self, req: _Req) -> tuple[Instrument, _Terms]:
        """Every check Binance makes before the matching engine: parameters, then filters."""
        p = req.params
        inst = self._symbol(p)
        side = p.get("side", "")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        type_ = p.get("type", "")
        if not type_:
            raise mandatory("type")
        if type_ in _UNSUPPORTED_TYPES:
            raise BinanceError(-1013, "Unsupported order combination.")
        if type_ not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise BinanceError(-1116, "Invalid orderType.")
        quote_qty = _ZERO
        if "quoteOrderQty" in p:
            if type_ != "MARKET" or "quantity" in p:
                raise not_required("quoteOrderQty")
            quote_qty = self._decimal(p, "quoteOrderQty")
            if quote_qty < inst.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            qty = self._qty_for_quote(inst, side, quote_qty)
        else:
            qty = self._decimal(p, "quantity")
        tif = "GTC"
        price = _ZERO
        if type_ == "LIMIT":
            tif = p.get("timeInForce", "")
            if not tif:
                raise mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(-1115, "Invalid timeInForce.")
            price = self._decimal(p, "price")
        elif type_ == "LIMIT_MAKER":
            if "timeInForce" in p:
                raise not_required("timeInForce")
            price = self._decimal(p, "price")
        else:
            for name in ("timeInForce", "price"):
                if name in p:
                    raise not_required(name)
        resp_type = p.get("newOrderRespType", "FULL" if type_ in ("LIMIT", "MARKET") else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise illegal_chars("newOrderRespType", "ACK, RESULT, FULL")
        client_id = self._client_id_param(p, "newClientOrderId")

        market = type_ == "MARKET"
        if not market and (
            price < inst.tick_size
            or price > _MAX_PRICE
            or (inst.tick_size > 0 and price % inst.tick_size != 0)
        ):
            raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
        if (
            qty < inst.min_qty
            or qty <= 0
            or qty > self._max_qty(inst)
            or (inst.step_size > 0 and qty % inst.step_size != 0)
        ):
            raise BinanceError(
                -1013, f"Filter failure: {'MARKET_LOT_SIZE' if market else 'LOT_SIZE'}"
            )
        if market:
            # applyMinToMarket: the notional of a market order is priced at the best opposite
            # quote, the price it would trade at first.
            bid, ask = self._engine.top_of_book(inst.symbol)
            best = ask if side == "BUY" else bid
            if best is not None and qty * best.price < inst.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
        elif qty * price < inst.min_notional or qty * price > _MAX_NOTIONAL:
            raise BinanceError(-1013, "Filter failure: NOTIONAL")
        return inst, _Terms(side, type_, tif, price, qty, quote_qty, resp_type, client_id)

    def _qty_for_quote(self, inst: Instrument, side: str, quote: Decimal) -> Decimal:
        """The base quantity a MARKET order with ``quoteOrderQty`` trades: what ``quote``
        buys (or, selling, brings in) walking the book now, rounded down to the step."""
        bids, asks = self._engine.depth(inst.symbol, 5000)
        qty, left = _ZERO, quote
        for level in asks if side == "BUY" else bids:
            take = min(level.size, left / level.price)
            qty += take
            left -= take * level.price
            if left <= 0:
                break
        return inst.round_qty(qty)

    def _test_order(self, req: _Req) -> object:
        self._validate_order(req)
        if req.params.get("computeCommissionRates") != "true":
            return {}
        return {
            "standardCommissionForOrder": {
                "maker": _fmt(self._maker_fee),
                "taker": _fmt(self._taker_fee),
            },
            "taxCommissionForOrder": {"maker": _fmt(_ZERO), "taker": _fmt(_ZERO)},
            "discount": {
                "enabledForAccount": False,
                "enabledForSymbol": False,
                "discountAsset": "BNB",
                "discount": _fmt(_ZERO),
            },
        }

    def _new_order(self, req: _Req) -> object:
        inst, t = self._validate_order(req)
        account, now_ms = req.account, req.now_ms
        self._limiter.check_order(account, now_ms)
        side, type_, tif, price, qty = t.side, t.type, t.tif, t.price, t.qty
        client_id = t.client_id
        ts = now_ms * _NS_PER_MS
        market = type_ == "MARKET"
        result = self._engine.submit(
            account,
            client_order_id=client_id,
            symbol=inst.symbol,
            side=Side.BUY if side == "BUY" else Side.SELL,
            type=OrderType.MARKET if market else OrderType.LIMIT,
            qty=qty,
            price=None if market else price,
            tif=TimeInForce.IOC if market else TimeInForce(tif.lower()),
            post_only=type_ == "LIMIT_MAKER",
            ts=ts,
        )
        mine = [r.report for r in result.reports if r.account == account]
        first = mine[0]
        if first.status is OrderStatus.REJECTED:
            raise self._rejection(first.extra.get("code", ""), market)
        order = _Order(
            order_id=int(first.venue_order_id),
            account=account,
            symbol=inst.symbol,
            client_order_id=client_id,
            side=side,
            type=type_,
            tif=tif,
            price=price,
            orig_qty=qty,
            orig_quote_qty=t.quote_qty,
            time_ms=now_ms,
            update_ms=now_ms,
        )
        self._orders[order.order_id] = order
        self._by_client[(account, inst.symbol, client_id)] = order.order_id
        self._user.new_order(order, now_ms)
        fills = self._apply(result, now_ms)
        self._update_ids[inst.symbol] += 1
        self._record_trades(result)
        self._hub.publish(
            inst.symbol, result.trades, quote=False, takers=taker_orders(result.reports)
        )
        ten_s, day = self._limiter.count_order(account, now_ms)
        req.headers["X-MBX-ORDER-COUNT-10S"] = str(ten_s)
        req.headers["X-MBX-ORDER-COUNT-1D"] = str(day)

        body: dict[str, object] = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": now_ms,
        }
        if t.resp_type == "ACK":
            return body
        body.update(
            {
                "price": _fmt(order.price),
                "origQty": _fmt(order.orig_qty),
                "executedQty": _fmt(order.executed),
                "origQuoteOrderQty": _fmt(order.orig_quote_qty),
                "cummulativeQuoteQty": _fmt(order.cum_quote),
                "status": order.status,
                "timeInForce": order.tif,
                "type": order.type,
                "side": order.side,
                "workingTime": now_ms,
                "selfTradePreventionMode": "NONE",
            }
        )
        if t.resp_type == "FULL":
            body["fills"] = [
                {
                    "price": _fmt(f.price),
                    "qty": _fmt(f.qty),
                    "commission": _fmt(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in fills
                if f.order_id == order.order_id
            ]
        return body

    @staticmethod
    def _rejection(code: str, market: bool) -> BinanceError:
        """The engine's reason, in Binance's words (most are caught before the engine)."""
        if code == "DUPLICATE_CLIENT_ID":
            return BinanceError(-2010, "Duplicate order sent.")
        if code == "INSUFFICIENT_BALANCE":
            return BinanceError(-2010, "Account has insufficient balance for requested action.")
        if code == "POST_ONLY_WOULD_CROSS":
            return BinanceError(-2010, "Order would immediately match and take.")
        if code in ("BAD_PRICE", "TICK_SIZE"):
            return BinanceError(-1013, "Filter failure: PRICE_FILTER")
        if code in ("BAD_QTY", "STEP_SIZE", "MIN_QTY", "MAX_QTY"):
            return BinanceError(
                -1013, f"Filter failure: {'MARKET_LOT_SIZE' if market else 'LOT_SIZE'}"
            )
        if code == "MIN_NOTIONAL":
            return BinanceError(-1013, "Filter failure: NOTIONAL")
        if code == "UNKNOWN_SYMBOL":
            return bad_symbol()
        return BinanceError(-1013, "Unsupported order combination.")

    def _apply(
        self, result: EngineResult, now_ms: int, cancel_ids: Mapping[int, str] | None = None
    ) -> list[_Fill]:
        """Bring the ``_Order`` records of API accounts up to date with ``result``, telling the
        user data stream about each change; the fills it recorded, in order. ``cancel_ids``:
        the ``newClientOrderId`` of the cancel request of each order it cancels."""
        fills: list[_Fill] = []
        for item in result.reports:
            if item.account not in self._keys or not item.report.venue_order_id:
                continue
            r = item.report
            order = self._orders.get(int(r.venue_order_id))
            if order is None:
                continue
            status = _STATUS.get(r.status)
            if status is not None:
                order.status = status
            if r.status is OrderStatus.ACCEPTED:
                order.working = True
            order.update_ms = now_ms
            if r.last_qty > 0:
                order.executed += r.last_qty
                order.cum_quote += r.last_qty * r.last_price
                fill = _Fill(
                    symbol=r.symbol,
                    trade_id=int(r.trade_id),
                    order_id=order.order_id,
                    price=r.last_price,
                    qty=r.last_qty,
                    commission=r.fee,
                    commission_asset=r.fee_asset,
                    time_ms=now_ms,
                    is_buyer=order.side == "BUY",
                    is_maker=r.liquidity.value == "maker",
                )
                self._fills[item.account].append(fill)
                fills.append(fill)
            self._user.report(order, r, now_ms, (cancel_ids or {}).get(order.order_id))
        self._user.flush(now_ms)
        return fills

    def _find_order(self, req: _Req, missing: BinanceError) -> _Order:
        p = req.params
        inst = self._symbol(p)
        order_id = self._int(p, "orderId")
        client_id = p.get("origClientOrderId", "")
        if order_id is None and not client_id:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is None or order.account != req.account or order.symbol != inst.symbol:
                raise missing
            if client_id and client_id != order.client_order_id:
                raise BinanceError(-2039, "Client order ID is not correct for this order ID.")
            return order
        found = self._by_client.get((req.account, inst.symbol, client_id))
        if found is None:
            raise missing
        return self._orders[found]

    @staticmethod
    def _order_json(o: _Order) -> dict[str, object]:
        return {
            "symbol": o.symbol,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": o.client_order_id,
            "price": _fmt(o.price),
            "origQty": _fmt(o.orig_qty),
            "executedQty": _fmt(o.executed),
            "cummulativeQuoteQty": _fmt(o.cum_quote),
            "status": o.status,
            "timeInForce": o.tif,
            "type": o.type,
            "side": o.side,
            "stopPrice": _fmt(_ZERO),
            "icebergQty": _fmt(_ZERO),
            "time": o.time_ms,
            "updateTime": o.update_ms,
            "isWorking": o.working,
            "workingTime": o.time_ms if o.working else -1,
            "origQuoteOrderQty": _fmt(o.orig_quote_qty),
            "selfTradePreventionMode": "NONE",
        }

    def _query_order(self, req: _Req) -> object:
        return self._order_json(self._find_order(req, BinanceError(-2013, "Order does not exist.")))

    def _cancel_json(self, o: _Order, cancel_id: str, now_ms: int) -> dict[str, object]:
        return {
            "symbol": o.symbol,
            "origClientOrderId": o.client_order_id,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": cancel_id,
            "transactTime": now_ms,
            "price": _fmt(o.price),
            "origQty": _fmt(o.orig_qty),
            "executedQty": _fmt(o.executed),
            "origQuoteOrderQty": _fmt(o.orig_quote_qty),
            "cummulativeQuoteQty": _fmt(o.cum_quote),
            "status": o.status,
            "timeInForce": o.tif,
            "type": o.type,
            "side": o.side,
            "selfTradePreventionMode": "NONE",
        }

    def _cancel_order(self, req: _Req) -> object:
        unknown = BinanceError(-2011, "Unknown order sent.")
        order = self._find_order(req, unknown)
        if order.status not in _OPEN:
            raise unknown
        restriction = req.params.get("cancelRestrictions", "")
        if (restriction == "ONLY_NEW" and order.status != "NEW") or (
            restriction == "ONLY_PARTIALLY_FILLED" and order.status != "PARTIALLY_FILLED"
        ):
            raise BinanceError(-2011, "Order was not canceled due to cancel restrictions.")
        cancel_id = self._client_id_param(req.params, "newClientOrderId")
        result = self._engine.cancel(
            req.account, order.symbol, order.client_order_id, req.now_ms * _NS_PER_MS
        )
        self._apply(result, req.now_ms, {order.order_id: cancel_id})
        self._update_ids[order.symbol] += 1
        self._hub.publish(order.symbol, result.trades, quote=False)
        return self._cancel_json(order, cancel_id, req.now_ms)

    def _open_records(self, account: str, symbol: str | None) -> list[_Order]:
        return [
            self._orders[int(v.venue_order_id)]
            for v in self._engine.open_venue_orders(account, symbol)
        ]

    def _open_orders(self, req: _Req) -> object:
        symbol = self._symbol(req.params).symbol if "symbol" in req.params else None
        return [self._order_json(o) for o in self._open_records(req.account, symbol)]

    def _all_orders(self, req: _Req) -> object:
        """Every order of the account on a symbol, by id: from ``orderId`` (or ``startTime``)
        the first ``limit``, else the most recent ``limit``; times select on creation."""
        p = req.params
        inst = self._symbol(p)
        from_id = self._int(p, "orderId")
        start = self._int(p, "startTime")
        end = self._int(p, "endTime")
        if start is not None and end is not None and end - start > 86_400_000:
            raise BinanceError(-1127, "More than 24 hours between startTime and endTime.")
        limit = self._int(p, "limit")
        limit = 500 if limit is None else min(max(limit, 1), 1000)
        out = [
            self._order_json(o)
            for o in sorted(self._orders.values(), key=lambda o: o.order_id)
            if o.account == req.account
            and o.symbol == inst.symbol
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time_ms >= start)
            and (end is None or o.time_ms <= end)
        ]
        return out[:limit] if from_id is not None or start is not None else out[-limit:]

    def _cancel_open_orders(self, req: _Req) -> object:
        inst = self._symbol(req.params)
        doomed = self._open_records(req.account, inst.symbol)
        if not doomed:
            raise BinanceError(-2011, "Unknown order sent.")
        cancel_ids = {o.order_id: self._new_client_id() for o in doomed}
        result = self._engine.cancel_all(req.account, inst.symbol, req.now_ms * _NS_PER_MS)
        self._apply(result, req.now_ms, cancel_ids)
        self._update_ids[inst.symbol] += 1
        self._hub.publish(inst.symbol, result.trades, quote=False)
        return [self._cancel_json(o, cancel_ids[o.order_id], req.now_ms) for o in doomed]

    # -- account ------------------------------------------------------------------------------

    def _account(self, req: _Req) -> object:
        maker = self._maker_fee
        taker = self._taker_fee
        balances = self._engine.balances(req.account)
        assets = dict.fromkeys(
            [a for i in self._instruments.values() for a in (i.base, i.quote)] + list(balances)
        )
        omit_zero = req.params.get("omitZeroBalances") == "true"
        rows = []
        for asset in assets:
            b = balances.get(asset)
            free = b.free if b else _ZERO
            locked = b.locked if b else _ZERO
            if omit_zero and free == 0 and locked == 0:
                continue
            rows.append({"asset": asset, "free": _fmt(free), "locked": _fmt(locked)})
        return {
            # The legacy integer fields are in basis points.
            "makerCommission": int(maker * 10_000),
            "takerCommission": int(taker * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _fmt(maker),
                "taker": _fmt(taker),
                "buyer": _fmt(_ZERO),
                "seller": _fmt(_ZERO),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": req.now_ms,
            "accountType": "SPOT",
            "balances": rows,
            "permissions": ["SPOT"],
            "uid": list(self._keys).index(req.account) + 1,
        }

    def _my_trades(self, req: _Req) -> object:
        p = req.params
        inst = self._symbol(p)
        order_id = self._int(p, "orderId")
        from_id = self._int(p, "fromId")
        start = self._int(p, "startTime")
        end = self._int(p, "endTime")
        limit = self._int(p, "limit")
        limit = 500 if limit is None else min(max(limit, 1), 1000)
        out = []
        for f in self._fills[req.account]:
            if f.symbol != inst.symbol:
                continue
            if order_id is not None and f.order_id != order_id:
                continue
            if from_id is not None and f.trade_id < from_id:
                continue
            if start is not None and f.time_ms < start:
                continue
            if end is not None and f.time_ms > end:
                continue
            out.append(
                {
                    "symbol": f.symbol,
                    "id": f.trade_id,
                    "orderId": f.order_id,
                    "orderListId": -1,
                    "price": _fmt(f.price),
                    "qty": _fmt(f.qty),
                    "quoteQty": _fmt(f.price * f.qty),
                    "commission": _fmt(f.commission),
                    "commissionAsset": f.commission_asset,
                    "time": f.time_ms,
                    "isBuyer": f.is_buyer,
                    "isMaker": f.is_maker,
                    "isBestMatch": True,
                }
            )
        # Without fromId Binance returns the most recent trades, oldest first.
        return out[:limit] if from_id is not None else out[-limit:]

    def _order_rate_limits(self, req: _Req) -> object:
        cfg = self._limiter.config
        ten_s, day = self._limiter.order_counts(req.account, req.now_ms)
        return [
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": cfg.orders_per_10s,
                "count": ten_s,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "DAY",
                "intervalNum": 1,
                "limit": cfg.orders_per_day,
                "count": day,
            },
        ]

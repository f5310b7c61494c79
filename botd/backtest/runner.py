"""Backtests on the live engine: the daemon's bus, strategy host, risk engine and gateway, with
a :class:`~botd.clock.SimClock`, a replay feed and the matching engine as the venue.

Nothing here decides what a strategy does, fills an order or keeps an account: the strategy
file runs in the same host as live, its orders pass the same risk checks and gateway, and the
paper matching engine fills them and keeps the balances (see :mod:`botd.backtest.venue`). The
replay feed only moves time, shows history to the venue and publishes it on the bus.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

import structlog

from botd.app import LiveRiskView
from botd.backtest.data import (
    BARS,
    QUOTES,
    DataError,
    DataSource,
    Event,
    infer_tick,
    open_source,
    read_events,
)
from botd.backtest.journal import MemoryJournal
from botd.backtest.loop import ReplayLoop
from botd.backtest.records import EquityPoint, FillRecord
from botd.backtest.venue import USER, BacktestVenue
from botd.bus import Bus
from botd.clock import NS_PER_SECOND, SimClock
from botd.durations import timeframe_ns
from botd.feeds.bars import BarAggregator
from botd.gateway import Gateway, GatewayConfig
from botd.gateway.ids import ClientIdFactory
from botd.model import Bar, Fill, Instrument, Order, OrderIntent, OrderUpdate, Quote, Trade
from botd.risk import RiskEngine, RiskLimits
from botd.schedule import Scheduler
from botd.strategy.api import Strategy
from botd.strategy.host import HostedStrategy, HostLimits, StrategyHost, StrategyStatus
from botd.strategy.loader import LoadedStrategy, load_file
from botd.strategy.params import Param, ParamError, resolve_params

__all__ = [
    "EX_DATAERR",
    "EX_NOINPUT",
    "FILL_AT",
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "run",
    "run_events",
    "split_symbol",
]

EX_DATAERR = 65  # sysexits.h: the input (a strategy or data file) is wrong
EX_NOINPUT = 66
EX_SOFTWARE = 70
FILL_AT = ("next_open", "close")
DEFAULT_STEP = Decimal("0.00000001")
_ZERO = Decimal(0)
_QUOTES = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "TRY", "BRL", "JPY",
    "BTC", "ETH", "BNB",
)  # fmt: skip
_EQUITY_TICK_NS = 60 * NS_PER_SECOND
_BAR_FLUSH_NS = NS_PER_SECOND // 10  # the live aggregator's flush tick


class BacktestError(Exception):
    """A backtest that cannot run: a broken strategy file, unreadable data, bad options."""

    def __init__(self, message: str, exit_code: int = EX_DATAERR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    cash: Decimal = Decimal("10000")  # in the quote currency
    fees: Decimal = Decimal("0.001")  # taker fee, a fraction of each fill
    maker_fees: Decimal | None = None  # None: the same as ``fees``
    slippage_bps: Decimal = _ZERO  # market and marketable orders fill this much worse
    latency_ms: float = 0.0  # quote and trade data: order arrival after the decision
    fill_at: str = "next_open"  # bar data: market orders at the next bar's open, or "close"
    tick: Decimal | None = None  # None: inferred from the prices in the data
    step: Decimal | None = None  # None: 0.00000001
    min_notional: Decimal = _ZERO
    start_ns: int | None = None
    end_ns: int | None = None
    symbol: str | None = None  # the symbol of every data file (default: the file name)
    params: Mapping[str, object] = field(default_factory=dict)  # "name" or "strategy.name"
    progress: bool = False
    log_level: str = "warning"
    log_file: TextIO | None = None  # default: stderr


@dataclass(slots=True)
class BacktestResult:
    fills: list[FillRecord]
    equity: list[EquityPoint]
    orders: list[Order]  # every order, in its final state, in submission order
    initial_cash: Decimal
    start_ns: int
    end_ns: int
    events: int
    meta: dict[str, str | int]
    elapsed_s: float  # wall-clock time of the replay (never in the summary: not deterministic)
    cpu_s: float = 0.0  # CPU time of the replay (steadier than wall time on a busy machine)
    rejected: int = 0
    _stats: Any = None

    @property
    def stats(self) -> Any:
        """The run's statistics (:class:`botd.backtest.stats.Stats`), computed once."""
        if self._stats is None:
            from botd.backtest.stats import compute_stats

            self._stats = compute_stats(
                self.fills,
                self.equity,
                self.initial_cash,
                start_ns=self.start_ns,
                end_ns=self.end_ns,
            )
        return self._stats

    def summary_json(self) -> str:
        from botd.backtest.report import summary_json

        return str(summary_json(self.stats, self.meta))

    def write_report(self, out_dir: Path) -> dict[str, Path]:
        from botd.backtest.report import write_report

        paths: dict[str, Path] = write_report(
            Path(out_dir), self.stats, self.fills, self.equity, self.meta
        )
        return paths


# -- the public entry point -------------------------------------------------------------------
def run(
    strategies: str | Path | Sequence[str | Path],
    data: str | Path | Sequence[str | Path],
    config: BacktestConfig | None = None,
    **options: Any,
) -> BacktestResult:
    """Backtest the strategy file(s) on the data file(s). ``options`` are
    :class:`BacktestConfig` fields (``cash=Decimal("5000")``, ``fees=...``, ``params={...}``).
    Raises :class:`BacktestError` when the strategy, the data or an option is wrong."""
    cfg = replace(config or BacktestConfig(), **_coerce_options(options))
    files = (
        [Path(strategies)] if isinstance(strategies, str | Path) else [Path(s) for s in strategies]
    )
    paths = [Path(data)] if isinstance(data, str | Path) else [Path(d) for d in data]
    plan = _plan(files, paths, cfg)
    return _run_sync(plan)


def run_events(
    strategies: str | Path | Sequence[str | Path],
    events: Sequence[Event],
    config: BacktestConfig | None = None,
    **options: Any,
) -> BacktestResult:
    """:func:`run` on events already in memory (in time order), e.g. from a notebook or a
    benchmark; their venue is replaced by the strategies' venue."""
    cfg = replace(config or BacktestConfig(), **_coerce_options(options))
    files = (
        [Path(strategies)] if isinstance(strategies, str | Path) else [Path(s) for s in strategies]
    )
    plan = _plan(files, [], cfg, events=events)
    return _run_sync(plan)


def _run_sync(plan: _Plan) -> BacktestResult:
    """Replay on a fresh event loop; from inside a running loop (a notebook, an async test)
    on a thread of its own, since one loop cannot run another."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_replay_loop(plan)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="backtest") as pool:
        return pool.submit(_run_on_replay_loop, plan).result()


def _run_on_replay_loop(plan: _Plan) -> BacktestResult:
    results: list[BacktestResult] = []

    async def replay() -> None:
        # The result is handed over outside the task: on its way out asyncio.Runner may
        # format the main task (restoring the SIGINT handler), and with it the task's result,
        # every fill and order of a long run.
        results.append(await _Replay(plan).run())

    with asyncio.Runner(loop_factory=ReplayLoop) as runner:
        runner.run(replay())
    return results[0]


def _coerce_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in ("cash", "fees", "maker_fees", "slippage_bps", "tick", "step", "min_notional"):
        value = out.get(key)
        if value is not None and not isinstance(value, Decimal):
            out[key] = Decimal(repr(value) if isinstance(value, float) else str(value))
    return out


def split_symbol(symbol: str) -> tuple[str, str]:
    """Base and quote asset of a symbol: ``BTCUSDT`` → (BTC, USDT), ``ETH-EUR`` → (ETH, EUR)."""
    for sep in ("/", "-", "_"):
        if sep in symbol:
            base, quote = symbol.split(sep, 1)
            return base.upper(), quote.upper()
    upper = symbol.upper()
    for quote in _QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return upper[: -len(quote)], quote
    return upper, "USD"


# -- planning: everything checked before anything runs ---------------------------------------
@dataclass(slots=True)
class _Plan:
    config: BacktestConfig
    strategies: list[LoadedStrategy]
    overrides: dict[str, dict[str, Any]]
    sources: list[DataSource]
    venue: str
    instruments: list[Instrument]
    data_timeframes: dict[str, str]  # symbol -> bar length of its bar data
    quoted: set[str]  # symbols with quote data (their trades do not move the bid and ask)
    meta: dict[str, str | int]
    files: list[Path]
    events: Sequence[Event] | None = None


def _plan(
    files: list[Path],
    paths: list[Path],
    cfg: BacktestConfig,
    *,
    events: Sequence[Event] | None = None,
) -> _Plan:
    if cfg.fill_at not in FILL_AT:
        raise BacktestError(f"fill_at must be one of {', '.join(FILL_AT)}, not {cfg.fill_at!r}")
    for name in ("cash",):
        if getattr(cfg, name) <= 0:
            raise BacktestError(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ("fees", "maker_fees", "slippage_bps", "min_notional"):
        value = getattr(cfg, name)
        if value is not None and (not value.is_finite() or value < 0):
            raise BacktestError(f"{name} must be zero or positive, got {value}")
    if cfg.latency_ms < 0:
        raise BacktestError(f"latency_ms must be zero or positive, got {cfg.latency_ms}")
    if not files:
        raise BacktestError("no strategy file given")
    if not paths and events is None:
        raise BacktestError("no data file given (--data PATH)")

    loaded: list[LoadedStrategy] = []
    for path in files:
        if not path.is_file():
            raise BacktestError(f"{path}: no such strategy file", EX_NOINPUT)
        items, errors = load_file(path)
        if errors:
            raise BacktestError("\n".join(str(e) for e in errors))
        loaded.extend(items)
    seen: set[str] = set()
    for item in loaded:
        if item.id in seen:
            raise BacktestError(f"duplicate strategy id {item.id!r} ({item.path})")
        seen.add(item.id)

    sources: list[DataSource] = []
    for path in paths:
        if not path.exists():
            raise BacktestError(f"{path}: no such data file", EX_NOINPUT)
        try:
            sources.append(open_source(path, cfg.symbol))
        except DataError as exc:
            raise BacktestError(str(exc)) from None

    venue = loaded[0].cls.venue
    if events is not None:
        symbols, samples, data_tfs, quoted = _survey_events("events", iter(events), cfg, full=True)
    else:
        symbols, samples, data_tfs, quoted = _survey(sources, venue, cfg)
    if not symbols:
        raise BacktestError("the data holds no events in the chosen time range")
    quotes = sorted({split_symbol(sym)[1] for sym in symbols})
    if len(quotes) > 1:
        # Equity is counted in one currency; converting between quote assets is not modelled.
        raise BacktestError(
            f"the symbols {', '.join(symbols)} are quoted in {', '.join(quotes)}; a backtest "
            "runs in one quote currency"
        )
    overrides = _overrides(loaded, cfg.params, venue, symbols)
    instruments = []
    for symbol in symbols:
        base, quote = split_symbol(symbol)
        tick = cfg.tick if cfg.tick is not None else infer_tick(samples[symbol])
        step = cfg.step if cfg.step is not None else DEFAULT_STEP
        instruments.append(
            Instrument(
                venue=venue,
                symbol=symbol,
                base=base,
                quote=quote,
                tick_size=tick,
                step_size=step,
                min_qty=step,
                min_notional=cfg.min_notional,
            )
        )
    meta: dict[str, str | int] = {
        "strategies": ", ".join(s.id for s in loaded),
        "strategy_files": ", ".join(p.name for p in files),
        "data": ", ".join(p.name for p in paths) or "(in memory)",
        "symbols": ", ".join(symbols),
        "venue": venue,
        "cash": str(cfg.cash),
        "fees": str(cfg.fees),
        "maker_fees": str(cfg.maker_fees if cfg.maker_fees is not None else cfg.fees),
        "slippage_bps": str(cfg.slippage_bps),
        "latency_ms": f"{cfg.latency_ms:g}",
        "fill_at": cfg.fill_at,
        "params": ", ".join(
            f"{sid}.{k}={v}" for sid, table in sorted(overrides.items()) for k, v in
            sorted(table.items()) if k not in ("venue", "symbol")
        ),
    }  # fmt: skip
    return _Plan(
        cfg, loaded, overrides, sources, venue, instruments, data_tfs, quoted, meta, files, events
    )


_Survey = tuple[list[str], dict[str, list[Decimal]], dict[str, str], set[str]]


def _survey(sources: list[DataSource], venue: str, cfg: BacktestConfig) -> _Survey:
    """Symbols, a sample of prices per symbol (for the tick), bar lengths per symbol and the
    symbols that have quotes."""
    symbols: list[str] = []
    samples: dict[str, list[Decimal]] = {}
    tfs: dict[str, str] = {}
    quoted: set[str] = set()
    for source in sources:
        # A recording is read whole: any line may bring a new symbol.
        events = read_events(source, venue, start_ns=cfg.start_ns, end_ns=cfg.end_ns)
        try:
            found = _survey_events(str(source.path), events, cfg, full=source.symbol is None)
        except DataError as exc:
            raise BacktestError(str(exc)) from None
        for symbol in found[0]:
            if symbol not in samples:
                symbols.append(symbol)
                samples[symbol] = []
            samples[symbol].extend(found[1][symbol])
        quoted |= found[3]
        for symbol, tf in found[2].items():
            if tfs.setdefault(symbol, tf) != tf:
                raise BacktestError(
                    f"{source.path}: {symbol} bars of {tf} and {tfs[symbol]} in one run; give "
                    "one bar length per symbol"
                )
    return symbols, samples, tfs, quoted


def _survey_events(
    where: str, events: Iterator[Event], cfg: BacktestConfig, *, full: bool
) -> _Survey:
    symbols: list[str] = []
    samples: dict[str, list[Decimal]] = {}
    tfs: dict[str, str] = {}
    quoted: set[str] = set()
    for count, event in enumerate(events, start=1):
        sym = event.symbol
        if sym not in samples:
            symbols.append(sym)
            samples[sym] = []
        bucket = samples[sym]
        if len(bucket) < 500:
            if isinstance(event, Bar):
                bucket.extend((event.open, event.high, event.low, event.close))
            elif isinstance(event, Quote):
                bucket.extend((event.bid, event.ask))
            else:
                bucket.append(event.price)
        if isinstance(event, Quote):
            quoted.add(sym)
        if isinstance(event, Bar):
            known = tfs.setdefault(sym, event.timeframe)
            if known != event.timeframe:
                raise BacktestError(
                    f"{where}: {sym} bars of {event.timeframe} and {known} in one run; give one "
                    "bar length per symbol"
                )
        if not full and count >= 2000:
            break
    return symbols, samples, tfs, quoted


def _coerce_param(p: Param[Any], raw: object) -> object:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if p.kind is bool:
            if text.lower() in ("true", "yes", "1", "on"):
                return True
            if text.lower() in ("false", "no", "0", "off"):
                return False
            return text
        if p.kind is int:
            return int(text)
        if p.kind is float:
            return float(text)
        if p.kind is Decimal:
            return Decimal(text)
    except (ValueError, InvalidOperation):
        raise BacktestError(f"parameter {p.name}: {text!r} is not a {p.kind.__name__}") from None
    return text


def _overrides(
    loaded: list[LoadedStrategy],
    params: Mapping[str, object],
    venue: str,
    symbols: list[str],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {item.id: {} for item in loaded}
    by_id = {item.id: item for item in loaded}
    for key, raw in params.items():
        sid, dot, name = key.rpartition(".")
        targets = [by_id[sid]] if dot and sid in by_id else []
        if dot and not targets:
            raise BacktestError(f"--param {key}: no strategy {sid!r} in this run")
        if not dot:
            name = key
            targets = [item for item in loaded if name in item.cls.params()]
            if not targets:
                known = sorted({p for item in loaded for p in item.cls.params()})
                raise BacktestError(
                    f"--param {key}: no strategy has a parameter {name!r} "
                    f"(parameters: {', '.join(known) or 'none'})"
                )
        for item in targets:
            declared = item.cls.params()
            if name not in declared:
                raise BacktestError(f"--param {key}: strategy {item.id} has no parameter {name!r}")
            out[item.id][name] = _coerce_param(declared[name], raw)
    for item in loaded:
        try:
            resolve_params(item.cls.params(), out[item.id])
        except ParamError as exc:
            raise BacktestError(f"{item.path}: {item.id}: {exc}") from None
        cls = item.cls
        if cls.venue != venue:
            out[item.id]["venue"] = venue
        wanted = list(cls.declared_symbols())
        missing = [s for s in wanted if s not in symbols]
        if missing:
            if len(wanted) == 1 and len(symbols) == 1:
                out[item.id]["symbol"] = symbols[0]
            else:
                raise BacktestError(
                    f"{item.path}: {item.id} trades {', '.join(missing)}, which the data does "
                    f"not hold (it holds {', '.join(symbols)}); give data for it, or --symbol"
                )
    return out


# -- the replay --------------------------------------------------------------------------------
class _Resampler:
    """Bars of one symbol folded into longer bars (``1m`` data for a ``5m`` strategy)."""

    __slots__ = ("cur", "length", "timeframe")

    def __init__(self, timeframe: str) -> None:
        self.timeframe = timeframe
        self.length = timeframe_ns(timeframe)
        self.cur: Bar | None = None

    def add(self, bar: Bar) -> list[Bar]:
        out: list[Bar] = []
        start = bar.start - bar.start % self.length
        cur = self.cur
        if cur is not None and cur.start != start:
            out.append(cur)  # the data skipped the end of that interval
            cur = None
        if cur is None:
            end = start + self.length
            cur = Bar(
                bar.venue, bar.symbol, self.timeframe, bar.open, bar.high, bar.low, bar.close,
                bar.volume, start, end, end, end,
            )  # fmt: skip
        else:
            cur = replace(
                cur,
                high=max(cur.high, bar.high),
                low=min(cur.low, bar.low),
                close=bar.close,
                volume=cur.volume + bar.volume,
            )
        if bar.end >= cur.end:
            out.append(replace(cur, ts_event=bar.end, ts_recv=bar.end))
            cur = None
        self.cur = cur
        return out


class _HookErrors:
    """A log processor that remembers each strategy's latest hook failure, so a strategy that
    cannot start is reported with its reason, not only "see the log"."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event.get("event") == "strategy hook raised" and "strategy" in event:
            self.last[str(event["strategy"])] = str(event.get("error", ""))
        return event


def _quiet_logger(
    cfg: BacktestConfig, errors: _HookErrors
) -> structlog.typing.FilteringBoundLogger:
    level = getattr(logging, cfg.log_level.upper(), logging.WARNING)
    logger: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(cfg.log_file or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            errors,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    ).bind()  # a bound logger, not a lazy proxy that builds one on every log call
    return logger


class _Orders:
    """The gateway as the strategy host's order port, noting when a strategy asked for
    something, so the replay lets the gateway work only after events that need it."""

    __slots__ = ("asked", "gateway")

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.asked = False

    def submit(self, intent: OrderIntent) -> str:
        self.asked = True
        return self.gateway.submit(intent)

    def cancel(self, client_order_id: str) -> None:
        self.asked = True
        self.gateway.cancel(client_order_id)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return self.gateway.open_orders(strategy_id)


def _no_perf() -> int:
    # Hook time budgets measure wall time; in a backtest they would make results depend on
    # the machine's load, so a backtest never halts a strategy for being slow.
    return 0


def _merged(plan: _Plan) -> Iterator[Event]:
    cfg = plan.config
    if plan.events is not None:
        venue, lo, hi = plan.venue, cfg.start_ns, cfg.end_ns
        for e in plan.events:
            ts = e.start if isinstance(e, Bar) else e.ts_event
            if (lo is None or ts >= lo) and (hi is None or ts < hi):
                yield e if e.venue == venue else replace(e, venue=venue)
        return
    streams = [
        read_events(s, plan.venue, start_ns=cfg.start_ns, end_ns=cfg.end_ns) for s in plan.sources
    ]
    if len(streams) == 1:
        yield from streams[0]
        return

    def keyed(i: int, events: Iterator[Event]) -> Iterator[tuple[int, int, int, Event]]:
        counter = itertools.count()
        for e in events:
            yield (e.ts_event, i, next(counter), e)

    for item in heapq.merge(*(keyed(i, s) for i, s in enumerate(streams))):
        yield item[3]


class _Replay:
    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        cfg = plan.config
        self.cfg = cfg
        self.fills: list[FillRecord] = []
        self.equity: list[EquityPoint] = []
        self.orders: dict[str, Order] = {}
        self.marks: dict[str, Event] = {}  # the latest event per symbol, priced when needed
        self.instruments = {i.symbol: i for i in plan.instruments}
        self.quote_asset = plan.instruments[0].quote
        self.by_base = {i.base: i.symbol for i in plan.instruments}
        self._dirty = True  # the account changed since the last equity point
        self._holdings: dict[str, Decimal] = {}
        self.targets: dict[str, list[_Resampler]] = {}  # symbol -> coarser timeframes
        self.direct: set[str] = set()  # symbols whose data bars go out as they are

    async def run(self) -> BacktestResult:
        plan, cfg = self.plan, self.cfg
        self.hook_errors = _HookErrors()
        log = _quiet_logger(cfg, self.hook_errors)
        events = _merged(plan)
        try:
            first = next(events)
        except StopIteration:
            raise BacktestError("the data holds no events in the chosen time range") from None
        except DataError as exc:
            raise BacktestError(str(exc)) from None
        start_ns = first.start if isinstance(first, Bar) else first.ts_event
        self.clock = clock = SimClock(start_ns)
        self.bus = bus = Bus(log=log)
        self.venue = venue = BacktestVenue(
            name=plan.venue,
            clock=clock,
            instruments=plan.instruments,
            balances={self.quote_asset: cfg.cash},
            maker_fee=cfg.maker_fees if cfg.maker_fees is not None else cfg.fees,
            taker_fee=cfg.fees,
            slippage_bps=cfg.slippage_bps,
            latency_ns=int(cfg.latency_ms * 1_000_000),
            hold_until_next_bar=cfg.fill_at == "next_open",
        )
        view = LiveRiskView()
        risk = RiskEngine(
            clock=clock,
            view=view,
            limits=RiskLimits(price_band=None, max_quote_age_s=None),
            log=log,
        )
        self.gateway = gateway = Gateway(
            bus=bus,
            clock=clock,
            venues={plan.venue: venue},
            risk=risk,
            journal=MemoryJournal(),
            ids=ClientIdFactory(1),
            config=GatewayConfig(submit_timeout_s=3600.0, order_deadline_s=3600.0),
            log=log,
        )
        self.bars = BarAggregator(bus, clock, log=log)
        scheduler = Scheduler(clock, log=log)
        self.port = port = _Orders(gateway)
        self.host = host = StrategyHost(
            bus=bus,
            clock=clock,
            orders=port,
            market=gateway,
            bars=self.bars,
            scheduler=scheduler,
            overrides=plan.overrides,
            limits=HostLimits(hook_budget_ms=1e9),
            perf=_no_perf,
            log=log,
        )
        host.on_realized = risk.on_fill
        view.gateway, view.host = gateway, host
        bus.subscribe(Fill, self._on_fill, name="backtest.fills")
        bus.subscribe(OrderUpdate, self._on_order, name="backtest.orders")

        task = asyncio.get_running_loop().create_task(gateway.run(), name="gateway")
        await asyncio.sleep(0)
        no_trades = self._no_trades()  # before the clock starts: the replay's setup
        wall, cpu = time.perf_counter(), time.process_time()
        count = 0
        halted: list[str] = []
        try:
            self._start_strategies()
            await self._settle()
            self._record(start_ns)
            count = await self._replay(itertools.chain([first], events), no_trades=no_trades)
            halted = [
                f"{sid}: {h.halt_reason}"
                for sid, h in host.strategies.items()
                if h.status is StrategyStatus.HALTED
            ]
            host.stop_all()
            await self._settle()
        except DataError as exc:
            raise BacktestError(str(exc)) from None
        finally:
            failed = task.done() and not task.cancelled() and task.exception() is not None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await scheduler.close()
        if failed:
            raise BacktestError(f"the gateway stopped: {task.exception()!r}", EX_SOFTWARE)
        elapsed, cpu = time.perf_counter() - wall, time.process_time() - cpu
        end_ns = self.last_ns
        self._record(end_ns, force=True)
        meta = dict(plan.meta)
        meta["events"] = count
        if halted:
            meta["halted"] = "; ".join(halted)
        # In submission order (the first report of each), by creation time.
        orders = sorted(self.orders.values(), key=lambda o: o.ts_created)
        return BacktestResult(
            fills=self.fills,
            equity=self.equity,
            orders=orders,
            initial_cash=cfg.cash,
            start_ns=start_ns,
            end_ns=end_ns,
            events=count,
            meta=meta,
            elapsed_s=elapsed,
            cpu_s=cpu,
            rejected=sum(1 for o in orders if o.status.value == "rejected"),
        )

    # -- strategies --------------------------------------------------------------------------
    def _start_strategies(self) -> None:
        host, tfs = self.host, self.plan.data_timeframes
        for item in self.plan.strategies:
            hosted = host.prepare(item)
            if hosted is None:
                raise BacktestError(f"{item.path}: {item.id}: not started (see the log above)")
            self._fit_timeframe(hosted, tfs)
            host.replace(hosted)
            if not host.is_running(item.id):
                reason = host.strategies[item.id].halt_reason or "did not start"
                error = self.hook_errors.last.get(item.id)
                raise BacktestError(f"{item.path}: {item.id}: {reason}: {error or 'see the log'}")

    def _fit_timeframe(self, hosted: HostedStrategy, tfs: Mapping[str, str]) -> None:
        strategy = hosted.strategy
        if type(strategy).on_bar is Strategy.on_bar:
            return
        wanted = strategy.timeframe
        for symbol in strategy.traded_symbols:
            data_tf = tfs.get(symbol)
            if data_tf is None:
                continue
            have, want = timeframe_ns(data_tf), timeframe_ns(wanted)
            if want < have:
                # Coarser data than the strategy asks for: it runs on the bars there are.
                hosted.strategy.__dict__["timeframe"] = wanted = data_tf
                self.plan.meta["timeframe"] = data_tf
                want = have
            if want % have:
                raise BacktestError(
                    f"{hosted.source.path}: {hosted.id} wants {wanted} bars, which cannot be "
                    f"built from {data_tf} bars"
                )
            if want == have:
                self.direct.add(symbol)
            elif not any(r.timeframe == wanted for r in self.targets.get(symbol, [])):
                self.targets.setdefault(symbol, []).append(_Resampler(wanted))

    # -- the loop --------------------------------------------------------------------------
    def _no_trades(self) -> bool:
        """True if the data holds no trades (bars built from trades close on the clock too)."""
        if self.plan.events is None:
            return all(s.kind in (BARS, QUOTES) for s in self.plan.sources)
        return not any(type(e) is Trade for e in self.plan.events)

    async def _replay(self, events: Iterable[Event], *, no_trades: bool) -> int:
        clock, venue, port, bus = self.clock, self.venue, self.port, self.bus
        publish = bus.publish
        direct, targets = self.direct, self.targets
        marks = self.marks
        quoted = self.plan.quoted
        bars = self.bars
        equity_every = _EQUITY_TICK_NS
        next_equity = clock.time_ns() + equity_every
        # Bars built from trades close on the clock too (a quiet market); nothing to do
        # when no trades are replayed.
        next_flush = (1 << 62) if no_trades else clock.time_ns() + _BAR_FLUSH_NS
        have_bar_data = bool(self.plan.data_timeframes)
        if have_bar_data:
            equity_every = min(timeframe_ns(tf) for tf in self.plan.data_timeframes.values())
            next_equity = clock.time_ns()
        progress = _Progress(self.cfg.progress)
        count = 0
        ts = now = clock.time_ns()
        for event in events:
            count += 1
            kind = type(event)
            ts = event.ts_event
            if ts != now:
                # Everything that happened at one instant is shown to the venue and the
                # strategies before the gateway works (as a live feed publishes a venue's
                # burst before the loop turns): orders leave against that instant's market.
                if port.asked or venue.pending_reports:
                    await self._settle()
                if ts >= next_equity:
                    self._record(now)
                    next_equity = now + equity_every
                now = ts
                if clock.due(ts):
                    await clock.advance_to(ts)
                else:
                    clock.set(ts)
                if ts >= next_flush:
                    next_flush = ts - ts % _BAR_FLUSH_NS + _BAR_FLUSH_NS
                    bars.flush_due()
            if kind is Quote:
                assert isinstance(event, Quote)
                venue.quote(event.symbol, event.bid, event.ask, ts)
                marks[event.symbol] = event
                publish(event)
            elif kind is Trade:
                assert isinstance(event, Trade)
                price, sym = event.price, event.symbol
                if sym in quoted:
                    venue.trade(sym, price, ts)
                else:
                    # Trades are all there is: each is the market's price, bid and ask.
                    venue.quote(sym, price, price, ts)
                    marks[sym] = event
                    publish(Quote(event.venue, sym, price, price, _ZERO, _ZERO, ts, ts))
                publish(event)
            else:
                assert isinstance(event, Bar)
                sym = event.symbol
                venue.bar(sym, event.open, event.high, event.low, event.close, event.start, ts)
                marks[sym] = event
                if venue.pending_reports:
                    # Fills at this bar's open come before the bar itself.
                    await self._settle()
                close = event.close
                publish(Quote(event.venue, sym, close, close, _ZERO, _ZERO, ts, ts))
                if sym in direct:
                    publish(event)
                for resampler in targets.get(sym, ()):
                    for bar in resampler.add(event):
                        publish(bar)
            if count % 20_000 == 0:
                progress.update(count, ts)
        if port.asked or venue.pending_reports:
            await self._settle()
        ts = now
        progress.close(count)
        self.last_ns = ts
        return count

    async def _settle(self) -> None:
        """Let the gateway send what the strategies asked for and apply what the venue
        reported, until nothing moves (all on this loop: a fixed, deterministic sequence)."""
        gateway, venue = self.gateway, self.venue
        loop = asyncio.get_running_loop()
        idle = loop.idle if isinstance(loop, ReplayLoop) else lambda: False
        self.port.asked = False
        quiet = 0
        for _ in range(10_000):
            await asyncio.sleep(0)
            if gateway.busy_sending or venue.pending_reports:
                quiet = 0
            else:
                quiet += 1
                # The balance refresh runs a turn after the last report; nothing runs at all
                # once no callback is ready (the quiet turns would change nothing).
                if quiet >= 3 or idle():
                    return

    # -- records ----------------------------------------------------------------------------
    def _on_fill(self, fill: Fill) -> None:
        self._dirty = True
        inst = self.instruments.get(fill.symbol)
        fee, qty = fill.fee, fill.qty
        if inst is not None and fill.fee_asset == inst.base:
            # The engine takes a buy's fee from the coins bought, as Binance does. In quote
            # terms that is buying the coins received and paying the rest as the fee: the same
            # cash, and the quantity that can be sold again.
            fee = fill.fee * fill.price
            qty = fill.qty - fill.fee
        self.fills.append(
            FillRecord(
                ts_ns=fill.ts_event,
                strategy_id=fill.strategy_id,
                venue=fill.venue,
                symbol=fill.symbol,
                side=fill.side,
                quantity=qty,
                price=fill.price,
                fee=fee,
                order_id=fill.client_order_id,
                liquidity=fill.liquidity.value,
            )
        )

    def _on_order(self, update: OrderUpdate) -> None:
        self.orders[update.client_order_id] = update.order
        self._dirty = True

    def _record(self, ts: int, *, force: bool = False) -> None:
        """An equity point, marked to the latest prices. Balances are re-read only after the
        account changed; a point equal to the previous one is skipped (the statistics carry
        the last value forward), so a flat account costs one comparison per sample."""
        if self._dirty:
            self._dirty = False
            self._holdings = {
                asset: bal.total
                for asset, bal in self.venue.engine.balances(USER).items()
                if bal.total
            }
        equity = _ZERO
        exposure = _ZERO
        marks, by_base = self.marks, self.by_base
        for asset, total in self._holdings.items():
            if asset == self.quote_asset:
                equity += total
                continue
            symbol = by_base.get(asset)
            latest = marks.get(symbol) if symbol is not None else None
            if latest is None:
                continue
            mark = _price_of(latest)
            value = total * mark
            equity += value
            exposure += abs(value)
        points = self.equity
        if points:
            last = points[-1]
            if last.ts_ns >= ts and not force:
                return
            if not force and last.equity == equity and last.exposure == exposure:
                return
            if last.ts_ns == ts:
                points[-1] = EquityPoint(ts, equity, exposure)
                return
        points.append(EquityPoint(ts, equity, exposure))


def _price_of(event: Event) -> Decimal:
    if isinstance(event, Quote):
        return event.bid if event.bid == event.ask else event.mid
    if isinstance(event, Trade):
        return event.price
    return event.close


class _Progress:
    """A rich progress line on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        if not enabled or not sys.stderr.isatty():
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed:,} events"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("replaying", total=None)

    def update(self, count: int, ts: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=count, description=f"replaying {_iso(ts)}")

    def close(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=count)
            self._bar.stop()


def _iso(ts: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts / NS_PER_SECOND, tz=UTC).strftime("%Y-%m-%d %H:%M")

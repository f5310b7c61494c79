"""Prometheus metrics of one daemon, in its own ``CollectorRegistry``.

Most values already exist as counters and state in the parts of the daemon (feed runners,
gateway, throttles, strategy host, risk, journal, loop monitor); a collector reads them when
Prometheus scrapes, so the hot path pays nothing for them. Only what exists nowhere else is
recorded as it happens: events by type (one bus subscriber), order outcomes and latencies (per
order update, not per market event), and journal commit times (per commit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, Clock
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway
from botd.loopmon import LoopLagMonitor
from botd.model import Order, OrderIntent, OrderStatus, OrderUpdate
from botd.risk import RiskEngine, TradingState
from botd.store import Journal
from botd.strategy.host import StrategyHost, StrategyStatus

__all__ = ["CONTENT_TYPE", "DaemonMetrics", "MetricsSource"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_TERMINAL = {
    OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.REJECTED: "rejected",
    OrderStatus.EXPIRED: "expired",
}
# The first answer of a venue to a submitted order, whatever it is.
_ACKED = frozenset(
    {
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
    }
)


class MetricsSource(Protocol):
    """What the metrics read; :class:`botd.app.Daemon` is one."""

    @property
    def bus(self) -> Bus: ...

    @property
    def feeds(self) -> Sequence[FeedRunner]: ...

    @property
    def gateway(self) -> Gateway: ...

    @property
    def host(self) -> StrategyHost: ...

    @property
    def risk(self) -> RiskEngine: ...

    @property
    def journal(self) -> Journal | None: ...

    @property
    def lag(self) -> LoopLagMonitor: ...

    @property
    def reconciled(self) -> Mapping[str, int]:
        """Venue name -> wall time (ns) of its last successful reconciliation."""
        ...


def _s(ns: int) -> float:
    return ns / NS_PER_SECOND


def _f(value: Decimal) -> float:
    return float(value)


class DaemonMetrics:
    """Build after the daemon's parts exist, then :meth:`attach` once."""

    def __init__(self, clock: Clock, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._clock = clock
        self._version = version
        self._started_ns = clock.monotonic_ns()
        self.tick_to_intent = Histogram(
            "botd_tick_to_intent_seconds",
            "From the latest market event of the instrument (local receive time) to the "
            "strategy's order intent reaching the gateway.",
            ["strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.intent_to_send = Histogram(
            "botd_intent_to_send_seconds",
            "From the intent to the request leaving for the venue (risk, journal write, "
            "rate limiter).",
            ["venue"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.intent_to_venue = Histogram(
            "botd_intent_to_venue_seconds",
            "From the intent to the venue's first answer about the order.",
            ["venue"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.order_outcomes = PromCounter(
            "botd_orders",
            "Orders by how they ended (submitted counts every order sent to a venue).",
            ["venue", "outcome"],
            registry=self.registry,
        )
        self.journal_commit = Histogram(
            "botd_journal_commit_seconds",
            "Time of one journal commit (a group of writes, fsynced).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._source: MetricsSource | None = None

    def attach(self, source: MetricsSource) -> None:
        self._source = source
        source.bus.subscribe(OrderUpdate, self._on_order_update, name="metrics.orders")
        source.gateway.on_intent = self._on_intent
        if source.journal is not None:
            source.journal.on_commit = self._on_commit
        self.registry.register(_StateCollector(self, source))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    @property
    def uptime_s(self) -> float:
        return _s(self._clock.monotonic_ns() - self._started_ns)

    # -- recorded as it happens ---------------------------------------------------------------
    def _on_intent(self, intent: OrderIntent, now_ns: int) -> None:
        if self._source is None:
            return
        quote = self._source.gateway.last_quote(intent.venue, intent.symbol)
        if quote is not None and now_ns >= quote.ts_recv:
            self.tick_to_intent.labels(intent.strategy_id).observe(_s(now_ns - quote.ts_recv))

    def _on_order_update(self, update: OrderUpdate) -> None:
        order: Order = update.order
        status, previous = order.status, update.previous
        if status is OrderStatus.SUBMITTED and previous is OrderStatus.PENDING:
            self.order_outcomes.labels(order.venue, "submitted").inc()
            if order.ts_updated >= order.ts_created:
                self.intent_to_send.labels(order.venue).observe(
                    _s(order.ts_updated - order.ts_created)
                )
        elif (
            previous is OrderStatus.SUBMITTED
            and status in _ACKED
            and order.ts_updated >= order.ts_created
        ):
            self.intent_to_venue.labels(order.venue).observe(
                _s(order.ts_updated - order.ts_created)
            )
        if status is OrderStatus.UNKNOWN and previous is not OrderStatus.UNKNOWN:
            self.order_outcomes.labels(order.venue, "unknown").inc()
        outcome = _TERMINAL.get(status)
        if outcome is not None and previous not in _TERMINAL:
            self.order_outcomes.labels(order.venue, outcome).inc()

    def _on_commit(self, elapsed_ns: int, _writes: int) -> None:
        self.journal_commit.observe(_s(elapsed_ns))


class _StateCollector(Collector):
    """Reads the daemon's own counters and state at scrape time."""

    def __init__(self, metrics: DaemonMetrics, source: MetricsSource) -> None:
        self._m = metrics
        self._src = source

    def collect(self) -> Iterable[Metric]:
        yield from self._daemon()
        yield from self._streams()
        yield from self._gateway()
        yield from self._strategies()
        yield from self._journal_and_loop()

    def _daemon(self) -> Iterator[Metric]:
        m, src = self._m, self._src
        info = GaugeMetricFamily("botd_info", "The running botd.", labels=["version"])
        info.add_metric([m._version], 1)
        yield info
        yield GaugeMetricFamily("botd_uptime_seconds", "Seconds since start.", value=m.uptime_s)
        events = CounterMetricFamily(
            "botd_bus_events", "Events published on the bus, by type.", labels=["type"]
        )
        for kind, count in sorted(src.bus.counts.items(), key=lambda kv: kv[0].__name__):
            events.add_metric([kind.__name__], count)
        yield events
        errors = CounterMetricFamily(
            "botd_bus_handler_errors", "Bus subscribers that raised.", labels=["handler"]
        )
        for name, count in sorted(src.bus.handler_errors.items()):
            errors.add_metric([name], count)
        yield errors
        state = GaugeMetricFamily(
            "botd_trading_state",
            "1 for the trading state each scope is in (global, venue or strategy).",
            labels=["scope", "name", "state"],
        )
        snap = src.risk.snapshot()
        scopes: list[tuple[str, str, str]] = [("global", "", snap["global"]["state"])]
        scopes += [("venue", k, v["state"]) for k, v in snap["venues"].items()]
        scopes += [("strategy", k, v["state"]) for k, v in snap["strategies"].items()]
        for scope, name, current in scopes:
            for candidate in TradingState:
                state.add_metric([scope, name, candidate.value], float(candidate == current))
        yield state
        yield GaugeMetricFamily(
            "botd_kill_switch_engaged", "1 while the kill switch is on.", value=snap["killed"]
        )
        pnl = GaugeMetricFamily(
            "botd_realized_pnl_today",
            "Realized PnL since 00:00 UTC in the quote asset (strategy '' is all of them).",
            labels=["strategy"],
        )
        pnl.add_metric([""], float(snap["daily"]["pnl"]))
        for sid, value in snap["daily"]["strategies"].items():
            pnl.add_metric([sid], float(value))
        yield pnl

    def _streams(self) -> Iterator[Metric]:
        src = self._src
        now_mono = self._m._clock.monotonic_ns()
        events = CounterMetricFamily(
            "botd_stream_events", "Market-data events received, per venue.", labels=["venue"]
        )
        reconnects = CounterMetricFamily(
            "botd_stream_reconnects", "Market-data stream reopenings.", labels=["venue"]
        )
        connected = GaugeMetricFamily(
            "botd_stream_connected", "1 while the venue's stream delivers.", labels=["venue"]
        )
        staleness = GaugeMetricFamily(
            "botd_stream_staleness_seconds",
            "Seconds since the venue's last market-data event.",
            labels=["venue"],
        )
        for feed in src.feeds:
            venue = feed.venue
            events.add_metric([venue], feed.events)
            reconnects.add_metric([venue], feed.reconnects)
            connected.add_metric([venue], float(feed.connected))
            if feed.events:
                staleness.add_metric([venue], max(0.0, _s(now_mono - feed.last_event_ns)))
        yield from (events, reconnects, connected, staleness)
        reconciled = GaugeMetricFamily(
            "botd_venue_last_reconcile_timestamp_seconds",
            "Unix time of the venue's last successful reconciliation.",
            labels=["venue"],
        )
        for venue, ts in sorted(src.reconciled.items()):
            reconciled.add_metric([venue], _s(ts))
        yield reconciled

    def _gateway(self) -> Iterator[Metric]:
        gw = self._src.gateway
        open_orders = GaugeMetricFamily(
            "botd_open_orders", "Open orders.", labels=["venue", "strategy"]
        )
        counts: Counter[tuple[str, str]] = Counter(
            (o.venue, o.strategy_id) for o in gw.open_orders()
        )
        for (venue, sid), n in sorted(counts.items()):
            open_orders.add_metric([venue, sid], n)
        yield open_orders
        used = GaugeMetricFamily(
            "botd_ratelimit_used", "Rate-limit pool usage.", labels=["venue", "pool"]
        )
        limit = GaugeMetricFamily(
            "botd_ratelimit_limit", "Rate-limit pool size.", labels=["venue", "pool"]
        )
        headroom = GaugeMetricFamily(
            "botd_ratelimit_headroom_ratio",
            "Fraction of the pool still available (0 = exhausted).",
            labels=["venue", "pool"],
        )
        http_429 = CounterMetricFamily(
            "botd_venue_http_429",
            "Rate-limited answers (HTTP 429) from the venue.",
            labels=["venue"],
        )
        http_418 = CounterMetricFamily(
            "botd_venue_http_418", "Ban answers (HTTP 418) from the venue.", labels=["venue"]
        )
        for venue in gw.venue_names:
            throttle = gw.throttle(venue)
            for pool, (u, lim) in sorted(throttle.usage().items()):
                used.add_metric([venue, pool], u)
                limit.add_metric([venue, pool], lim)
                headroom.add_metric([venue, pool], max(0.0, 1.0 - u / lim) if lim else 0.0)
            http_429.add_metric([venue], throttle.pauses)
            http_418.add_metric([venue], throttle.bans)
        yield from (used, limit, headroom, http_429, http_418)
        balance = GaugeMetricFamily(
            "botd_balance", "Venue balances.", labels=["venue", "asset", "kind"]
        )
        for venue in gw.venue_names:
            for asset, bal in sorted(gw.balances(venue).items()):
                balance.add_metric([venue, asset, "free"], _f(bal.free))
                balance.add_metric([venue, asset, "locked"], _f(bal.locked))
        yield balance
        for name, value, text in (
            ("botd_gateway_unknown_reports", gw.unknown_reports, "Reports for unknown orders."),
            ("botd_gateway_duplicate_fills", gw.duplicate_fills, "Fills seen twice (ignored)."),
            (
                "botd_gateway_illegal_transitions",
                gw.illegal_transitions,
                "Order transitions refused as impossible.",
            ),
        ):
            yield CounterMetricFamily(name, text, value=value)

    def _strategies(self) -> Iterator[Metric]:
        host = self._src.host
        gw = self._src.gateway
        status = GaugeMetricFamily(
            "botd_strategy_status", "1 for each strategy's status.", labels=["strategy", "status"]
        )
        calls = CounterMetricFamily("botd_strategy_hook_calls", "Hook calls.", labels=["strategy"])
        seconds = CounterMetricFamily(
            "botd_strategy_hook_seconds", "Time spent in hooks.", labels=["strategy"]
        )
        errors = CounterMetricFamily(
            "botd_strategy_hook_errors", "Hooks that raised.", labels=["strategy"]
        )
        overruns = CounterMetricFamily(
            "botd_strategy_hook_overruns", "Hooks over their time budget.", labels=["strategy"]
        )
        for sid, hosted in sorted(host.strategies.items()):
            for candidate in StrategyStatus:
                status.add_metric([sid, candidate.value], float(hosted.status is candidate))
            calls.add_metric([sid], hosted.calls)
            seconds.add_metric([sid], _s(hosted.hook_ns))
            errors.add_metric([sid], hosted.error_total)
            overruns.add_metric([sid], hosted.overrun_total)
        yield from (status, calls, seconds, errors, overruns)
        labels = ["strategy", "venue", "symbol"]
        qty = GaugeMetricFamily("botd_position", "Net position in the base asset.", labels=labels)
        realized = GaugeMetricFamily(
            "botd_position_realized_pnl", "Realized PnL in the quote asset.", labels=labels
        )
        unrealized = GaugeMetricFamily(
            "botd_position_unrealized_pnl",
            "Unrealized PnL at the quote mid, in the quote asset.",
            labels=labels,
        )
        for (sid, venue, symbol), pos in sorted(host.positions().items()):
            key = [sid, venue, symbol]
            qty.add_metric(key, _f(pos.qty))
            realized.add_metric(key, _f(pos.realized_pnl))
            quote = gw.last_quote(venue, symbol)
            if quote is not None and pos.qty:
                mid = (quote.bid + quote.ask) / 2
                unrealized.add_metric(key, _f(pos.unrealized_pnl(mid)))
        yield from (qty, realized, unrealized)

    def _journal_and_loop(self) -> Iterator[Metric]:
        journal = self._src.journal
        if journal is not None:
            yield GaugeMetricFamily(
                "botd_journal_healthy", "1 while the journal commits.", value=journal.healthy
            )
            yield CounterMetricFamily(
                "botd_journal_commits", "Journal commits.", value=journal.commits
            )
            yield GaugeMetricFamily(
                "botd_journal_backlog", "Writes queued for the journal.", value=journal.backlog
            )
            yield CounterMetricFamily(
                "botd_journal_dropped_writes", "Writes dropped (unhealthy).", value=journal.dropped
            )
        lag = self._src.lag
        yield GaugeMetricFamily(
            "botd_loop_lag_seconds", "Latest event-loop lag sample.", value=_s(lag.last_lag_ns)
        )
        yield GaugeMetricFamily(
            "botd_loop_lag_max_seconds", "Largest event-loop lag seen.", value=_s(lag.max_lag_ns)
        )
        yield CounterMetricFamily(
            "botd_loop_lag_warnings", "Event-loop blocks over the warning level.", lag.warnings
        )

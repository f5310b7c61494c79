"""Composition root: builds every part of the daemon, supervises it, shuts it down in order."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import IO, Any

import structlog

from botd.bus import Bus
from botd.clock import Clock
from botd.control import ControlServer, ControlUnavailable
from botd.control.api import load_disabled
from botd.errors import AuthError, ConfigError, TransientVenueError
from botd.events import KillSwitchChanged
from botd.feeds.bars import BarAggregator
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway, GatewayConfig
from botd.gateway.reconcile import RECONCILE_ERRORS, Reconciler
from botd.health import write_heartbeat
from botd.healthmon import HealthMonitor
from botd.logs import Redactor
from botd.loopmon import LoopLagMonitor
from botd.model import Fill, Instrument, Order, Position, Quote
from botd.notify import Notifier, build_notifier
from botd.operator import take_request
from botd.risk import RiskEngine, RiskLimits, TradingState
from botd.schedule import Scheduler
from botd.sdnotify import SdNotifier, run_watchdog
from botd.sessions import Sessions, venue_calendar_code
from botd.settings import RiskLimitSettings, RiskSettings, Settings
from botd.store import DB_FILENAME, Journal, JournalError
from botd.strategy.host import HostLimits, StrategyHost, StrategyStatus
from botd.strategy.manager import StrategyManager
from botd.venues.base import VenueAdapter
from botd.venues.registry import build_venue
from botd.venues.sim.paper import PaperVenue, UnknownSymbol

__all__ = [
    "EX_CONFIG",
    "EX_IOERR",
    "EX_OK",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "Daemon",
    "LiveRiskView",
    "VenueWrapper",
]

# Exit codes after sysexits.h, so systemd can tell a bad config (do not restart) from a crash.
EX_OK = 0
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78

PAPER_ACCOUNT_FILE = "paper-account.json"
_STATUS_LOG_EVERY_S = 30.0
_STATE_SAVE_EVERY_S = 30.0
# Pending notifications get this long to go out at shutdown (inside the shutdown budget).
_NOTIFY_DRAIN_S = 2.0
_RISK_KEY = "risk"
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

# Wraps each venue adapter before use; the crash and fault tests inject faults through it.
VenueWrapper = Callable[[VenueAdapter], VenueAdapter]


class DataDirLocked(RuntimeError):
    pass


class VenueUnavailable(RuntimeError):
    """A venue could not be reached at start-up: exit 75 and let the supervisor retry."""


def _limits(src: RiskLimitSettings) -> RiskLimits:
    """Settings to risk limits. The fat-finger band and quote age are global only
    (``RiskSettings``); a strategy's own limits carry none."""
    band, quote_age = (
        (src.price_band, src.max_quote_age) if isinstance(src, RiskSettings) else (None, None)
    )
    return RiskLimits(
        max_order_notional=src.max_order_notional,
        max_position=src.max_position,
        max_open_orders=src.max_open_orders,
        max_orders_per_minute=src.max_orders_per_minute,
        max_daily_loss=src.max_daily_loss,
        price_band=band,
        max_quote_age_s=quote_age,
    )


class LiveRiskView:
    """What risk reads, assembled from the gateway and the strategy host (bound after both
    exist: the gateway needs risk, and risk reads the gateway)."""

    gateway: Gateway
    host: StrategyHost

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self.gateway.last_quote(venue, symbol)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self.gateway.instrument(venue, symbol)

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        return self.host.position(strategy_id, venue, symbol)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return self.gateway.open_orders(strategy_id)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        environ: Mapping[str, str],
        venue_wrapper: VenueWrapper | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.log = log or structlog.get_logger("botd")
        self.notifier = SdNotifier.from_environ(environ)
        self.bus = Bus()
        self.venues: dict[str, VenueAdapter] = {}
        self._venue_wrapper = venue_wrapper
        self._stop = asyncio.Event()
        self._rescan = asyncio.Event()
        self._kill_requested = ""
        self._release_requested = ""
        self._stop_reason = ""
        self._fills = 0
        self._lock_file: IO[str] | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.journal: Journal | None = None
        self.notify: Notifier | None = None
        self.control: ControlServer | None = None
        # Venue -> wall time (ns) of its last successful reconciliation / its last failure.
        self.reconciled: dict[str, int] = {}
        self.reconcile_errors: dict[str, str] = {}
        self._killed_seen = False
        # Health reasons carry venue error text into the heartbeat file, which no log
        # processor sees.
        self._redactor = Redactor(settings.secret_values())

    # -- building ---------------------------------------------------------------------------
    def _build(self, journal: Journal) -> None:
        s = self.settings
        data_dir = s.daemon.data_dir
        try:
            paper: VenueAdapter = PaperVenue(
                clock=self.clock,
                symbols=s.paper.symbols,
                seed=s.paper.seed,
                event_rate=s.paper.event_rate,
                maker_fee=s.paper.maker_fee,
                taker_fee=s.paper.taker_fee,
                balances=s.paper.balances,
                state_path=data_dir / PAPER_ACCOUNT_FILE
                if s.gateway.persist_paper_account
                else None,
            )
        except UnknownSymbol as exc:
            raise ConfigError(f"paper.symbols: {exc}") from None
        if self._venue_wrapper is not None:
            paper = self._venue_wrapper(paper)
        self.venues[paper.name] = paper
        for name, cfg in s.venues.items():
            if not cfg.enabled:
                self.log.info("venue configured but disabled", venue=name)
                continue
            if name == paper.name:
                raise ConfigError(f"venues.{name}: the name {name!r} is the built-in paper venue")
            self.venues[name] = build_venue(name, cfg, self.clock, self._usage_sink(name))

        view = LiveRiskView()
        self.risk = RiskEngine(
            clock=self.clock,
            view=view,
            limits=_limits(s.risk),
            strategy_limits={sid: _limits(x) for sid, x in s.risk.per_strategy.items()},
        )
        self.gateway = Gateway(
            bus=self.bus,
            clock=self.clock,
            venues=self.venues,
            risk=self.risk,
            journal=journal,
            config=GatewayConfig(
                submit_timeout_s=s.gateway.submit_timeout,
                order_deadline_s=s.gateway.order_deadline,
            ),
        )
        self.reconciler = Reconciler(self.gateway, journal, self.clock)
        # No trade-built bars for the timeframes a venue delivers (e.g. Binance klines).
        delivered = {n: v.capabilities.bar_timeframes for n, v in self.venues.items()}
        self.bars = BarAggregator(
            self.bus, self.clock, venue_bars=lambda v: delivered.get(v, frozenset())
        )
        self.scheduler = Scheduler(self.clock)
        rt = s.runtime
        # Market hours per venue and symbol (market_open, on_session_open/close).
        self.sessions = Sessions(lambda v, sym: venue_calendar_code(self.venues.get(v), sym))
        self.host = StrategyHost(
            bus=self.bus,
            clock=self.clock,
            orders=self.gateway,
            market=self.gateway,
            bars=self.bars,
            scheduler=self.scheduler,
            sessions=self.sessions,
            overrides=s.strategies,
            limits=HostLimits(
                max_errors=rt.max_errors,
                error_window_s=rt.error_window,
                hook_budget_ms=rt.hook_budget_ms,
                max_overruns=rt.max_overruns,
            ),
        )
        self.host.on_realized = self.risk.on_fill
        view.gateway, view.host = self.gateway, self.host
        self.strategies = StrategyManager(
            host=self.host,
            folder=s.daemon.strategies_dir,
            settings=s.strategies,
            cancel_orders_on_removal=rt.cancel_orders_on_removal,
        )
        self.lag = LoopLagMonitor(
            self.clock, warn_ms=rt.loop_lag_warn_ms, suspect=lambda: self.host.last_overrun
        )
        rng = random.Random(s.paper.seed)
        symbols_of = {paper.name: list(s.paper.symbols)}
        symbols_of.update(
            {name: list(cfg.symbols) for name, cfg in s.venues.items() if cfg.enabled}
        )
        self.feeds = [
            FeedRunner(
                adapter=adapter,
                symbols=symbols_of[name],
                bus=self.bus,
                clock=self.clock,
                rng=rng,
            )
            for name, adapter in self.venues.items()
        ]
        self.bus.subscribe(Fill, self._count_fill, name="daemon.fill_counter")
        self.health = HealthMonitor(
            clock=self.clock,
            bus=self.bus,
            feeds=self.feeds,
            lag=self.lag,
            max_loop_lag_ms=s.health.max_loop_lag_ms,
            venue_grace_s=s.health.venue_grace,
        )
        self.notify = build_notifier(
            s.notify, bus=self.bus, clock=self.clock, status=self._summary_status
        )
        if self.notify is not None:
            self.notify.attach()
            self.log.info("notifications on", transports=self.notify.transports)

    def _usage_sink(self, venue: str) -> Callable[[dict[str, int], int], None]:
        """Feeds a venue's own rate-limit counters (response headers) to its limiter."""

        def adopt(usage: dict[str, int], sent_ns: int) -> None:
            throttle = self.gateway.throttle(venue)
            for pool, used in usage.items():
                throttle.observe(pool, used, sent_ns)

        return adopt

    def _count_fill(self, _: Fill) -> None:
        self._fills += 1

    def _lock_data_dir(self) -> None:
        data_dir = self.settings.daemon.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"daemon.data_dir: cannot create {data_dir}: {exc}") from None
        path = data_dir / "botd.lock"
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DataDirLocked(
                f"data directory {data_dir} is in use by pid {holder}: two daemons on one "
                "state directory would trade the same orders twice"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    # -- running ----------------------------------------------------------------------------
    async def run(self) -> int:
        self._main_task = asyncio.current_task()
        folder = self.settings.daemon.strategies_dir
        if not folder.is_dir():
            raise ConfigError(f"daemon.strategies_dir: {folder} is not a directory")
        try:
            self._lock_data_dir()
        except DataDirLocked as exc:
            self.log.error("cannot start", error=str(exc))
            return EX_TEMPFAIL
        try:
            try:
                self.journal = await Journal.open(
                    self.settings.daemon.data_dir / DB_FILENAME, clock=self.clock
                )
            except JournalError as exc:
                self.log.error("cannot open the journal", error=str(exc))
                return EX_IOERR
            self._build(self.journal)
            try:
                code = await self._supervise(self.journal)
            except VenueUnavailable:
                code = EX_TEMPFAIL
            except ControlUnavailable as exc:
                self.log.error("cannot start", error=str(exc))
                code = EX_TEMPFAIL
        finally:
            if self.control is not None:
                await self.control.stop()
            for task in self._background:
                task.cancel()
            for venue in self.venues.values():
                with contextlib.suppress(Exception):
                    await venue.close()
            if self.journal is not None:
                with contextlib.suppress(JournalError):
                    await self.journal.close()
            self.notifier.close()
            if self._lock_file is not None:
                self._lock_file.close()
        self.log.info("botd stopped", reason=self._stop_reason, fills=self._fills)
        return code

    async def _restore(self, journal: Journal) -> None:
        """Everything the previous run left: kill switch, orders, positions, strategy state."""
        saved = await journal.get_value(_RISK_KEY)
        if isinstance(saved, dict):
            self.risk.restore(saved)
            if self.risk.killed:
                self.log.warning("kill switch is engaged from a previous run; not trading")
        self._killed_seen = self.risk.killed
        self.risk.on_change = self._risk_changed
        await self.gateway.start()
        self.host.rebuild_positions(await journal.fills())
        self.host.saved_states = await journal.strategy_states()
        self.strategies.disabled = await load_disabled(journal)

    def _risk_changed(self, snapshot: dict[str, Any]) -> None:
        self._persist_risk(snapshot)
        # Every path to the kill switch (signal, control API, operator file) goes through risk.
        killed = bool(snapshot.get("killed"))
        if killed != self._killed_seen:
            self._killed_seen = killed
            reason = str(snapshot.get("global", {}).get("reason", ""))
            self.bus.publish(KillSwitchChanged(killed, reason, self.clock.time_ns()))

    def _persist_risk(self, snapshot: dict[str, Any]) -> None:
        if self.journal is not None:
            self._spawn(self.journal.set_value(_RISK_KEY, snapshot), "persist-risk")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reconcile_all(self, *, startup: bool) -> None:
        for name in self.venues:
            try:
                await self.reconciler.reconcile(name)
            except RECONCILE_ERRORS as exc:
                reason = f"not reconciled: {exc}"
                affected = [
                    sid
                    for sid, h in self.host.strategies.items()
                    if h.strategy.venue == name and h.status is StrategyStatus.RUNNING
                ]
                self.log.error(
                    "venue could not be reconciled; not trading it",
                    venue=name,
                    error=str(exc),
                    strategies=affected,
                )
                self.risk.set_state(TradingState.HALTED, reason, venue=name)
                self.reconcile_errors[name] = self._redactor.scrub(str(exc) or type(exc).__name__)
                continue
            self.reconciled[name] = self.clock.time_ns()
            self.reconcile_errors.pop(name, None)
            if self.risk.state_of(venue=name) is TradingState.HALTED and not startup:
                self.log.info("venue reconciled again; trading resumes", venue=name)
            if self.risk.state_of(venue=name) is not TradingState.ACTIVE:
                self.risk.set_state(TradingState.ACTIVE, "reconciled", venue=name)

    async def _supervise(self, journal: Journal) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._rescan.set)
        loop.add_signal_handler(signal.SIGUSR1, self.request_kill, "SIGUSR1 (botd kill)")
        loop.add_signal_handler(signal.SIGUSR2, self.request_release, "SIGUSR2 (botd resume)")
        self.log.info(
            "botd starting",
            venues=list(self.venues),
            symbols=self.settings.paper.symbols,
            strategies_dir=str(self.settings.daemon.strategies_dir),
            data_dir=str(self.settings.daemon.data_dir),
        )
        await self._restore(journal)
        if self.settings.control.enabled:
            # After the restore (a kill switch engaged through it is persisted), before the
            # venues connect: /health answers, and /ready says why not, during start-up.
            self.control = ControlServer(self)
            await self.control.start()
        for name, venue in self.venues.items():
            try:
                await venue.connect()
            except AuthError as exc:
                raise ConfigError(
                    f"venues.{name}: the venue refused our credentials: {exc}"
                ) from None
            except (TransientVenueError, OSError, TimeoutError) as exc:
                self.log.error("venue unreachable at start-up", venue=name, error=str(exc))
                raise VenueUnavailable(name) from exc
        # Exchange calendars take a second to load: off the event loop, before strategies.
        pairs = [(n, sym) for n, v in self.venues.items() for sym in v.instruments()]
        await asyncio.to_thread(self.sessions.preload, pairs)
        try:
            async with asyncio.TaskGroup() as tg:
                gateway_task = tg.create_task(self.gateway.run(), name="gateway")
                # Reconcile before any strategy can trade.
                await self._reconcile_all(startup=True)
                feed_tasks = [tg.create_task(f.run(), name="feed") for f in self.feeds]
                aux = [
                    tg.create_task(self._heartbeat(), name="heartbeat"),
                    tg.create_task(self.bars.run(), name="bars"),
                    tg.create_task(self.lag.run(), name="loop-lag"),
                    tg.create_task(self._checkpoint(), name="checkpoint"),
                    tg.create_task(self._reconcile_periodically(), name="reconcile"),
                ]
                if self.notify is not None:
                    aux.append(tg.create_task(self.notify.run(), name="notify"))
                if self.notifier.watchdog_interval() is not None:
                    aux.append(
                        tg.create_task(
                            run_watchdog(
                                self.notifier,
                                self.clock,
                                lambda: (
                                    not gateway_task.done()
                                    and not any(t.done() for t in feed_tasks)
                                    and self.health.check().healthy
                                ),
                            ),
                            name="watchdog",
                        )
                    )
                self.strategies.sync()
                # Stopped first on shutdown, with the feeds: no reload while strategies stop.
                inputs = list(feed_tasks)
                if self.settings.runtime.hot_reload:
                    inputs.append(tg.create_task(self.strategies.watch(), name="strategy-watch"))
                running = sum(
                    1 for h in self.host.strategies.values() if h.status is StrategyStatus.RUNNING
                )
                self.notifier.ready()
                self.notifier.status(f"trading: {running} strategies on {', '.join(self.venues)}")
                self.log.info("botd ready", strategies=running, trading=self.risk.state.value)
                await self._wait_for_stop()
                await self._shutdown(inputs)
                await self._drain_notifications()
                for task in [gateway_task, *aux]:
                    task.cancel()
                await self.scheduler.close()
        finally:
            for sig in (
                signal.SIGINT,
                signal.SIGTERM,
                signal.SIGHUP,
                signal.SIGUSR1,
                signal.SIGUSR2,
            ):
                loop.remove_signal_handler(sig)
        await self._write_heartbeat("stopped")
        return EX_OK

    def request_stop(self, reason: str = "requested") -> None:
        if self._stop.is_set():
            # A second Ctrl-C means "now": abandon the orderly shutdown.
            self.log.warning("second stop request: exiting without waiting")
            if self._main_task is not None:
                self._main_task.cancel()
            return
        self._stop_reason = reason
        self._stop.set()

    def request_kill(self, reason: str) -> None:
        self._kill_requested = reason
        self._rescan.set()  # wakes the supervisor loop

    def request_release(self, reason: str) -> None:
        self._release_requested = reason
        self._rescan.set()

    async def _wait_for_stop(self) -> None:
        while not self._stop.is_set():
            rescan = asyncio.ensure_future(self._rescan.wait())
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({rescan, stop}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (rescan, stop):
                fut.cancel()
            if self._stop.is_set() or not self._rescan.is_set():
                continue
            self._rescan.clear()
            data_dir = self.settings.daemon.data_dir
            if self._kill_requested:
                reason = take_request(data_dir) or self._kill_requested
                self._kill_requested = ""
                cancelled = self.gateway.kill(reason)
                self.log.error("KILL SWITCH engaged", reason=reason, cancelling=cancelled)
            elif self._release_requested:
                reason = take_request(data_dir) or self._release_requested
                self._release_requested = ""
                self.risk.release(reason)
                self.log.warning("kill switch released; trading resumes", reason=reason)
            else:
                self.log.info("rescanning strategies (SIGHUP)")
                self.strategies.sync()

    async def _shutdown(self, inputs: list[asyncio.Task[None]]) -> None:
        s = self.settings.daemon
        self.notifier.stopping()
        self.log.info("botd stopping", reason=self._stop_reason)
        # Leave headroom inside the overall budget for the final flush.
        budget = s.shutdown_timeout * 0.8
        try:
            async with asyncio.timeout(budget):
                for task in inputs:
                    task.cancel()
                await asyncio.gather(*inputs, return_exceptions=True)
                self.host.stop_all()
                await self._save_states()
                await self.scheduler.close()
                if s.cancel_orders_on_shutdown:
                    cancelled = self.gateway.cancel_all()
                    if cancelled:
                        self.log.info("cancelling open orders", count=cancelled)
                    await self.gateway.drain()
                    await self.gateway.wait_no_open_orders()
                await self.gateway.drain()
                if self.journal is not None:
                    await self.journal.flush()
        except TimeoutError:
            left = self.gateway.open_orders()
            self.log.error(
                "shutdown budget exhausted",
                budget_s=budget,
                open_orders=[o.client_order_id for o in left],
            )

    async def _save_states(self) -> None:
        if self.journal is None:
            return
        for sid, state in self.host.states().items():
            try:
                await self.journal.save_strategy_state(sid, state)
            except JournalError as exc:
                self.log.error("strategy state not saved", strategy=sid, error=str(exc))

    async def _checkpoint(self) -> None:
        """Save every strategy's state now and then, not only at shutdown (crashes happen)."""
        while True:
            await self.clock.sleep(_STATE_SAVE_EVERY_S)
            await self._save_states()

    async def _reconcile_periodically(self) -> None:
        while True:
            await self.clock.sleep(self.settings.gateway.reconcile_interval)
            await self._reconcile_all(startup=False)

    async def _drain_notifications(self) -> None:
        if self.notify is None:
            return
        try:
            async with asyncio.timeout(_NOTIFY_DRAIN_S):
                await self.notify.drain()
        except TimeoutError:
            self.log.warning("notifications still queued at exit", queued=self.notify.queued())

    def _summary_status(self) -> dict[str, Any]:
        return {
            "trading": self.risk.state.value,
            "kill_switch": self.risk.killed,
            "open_orders": len(self.gateway.open_orders()),
            "strategies": {sid: h.status.value for sid, h in self.host.strategies.items()},
            "pnl_today": self.risk.snapshot()["daily"]["pnl"],
        }

    async def _heartbeat(self) -> None:
        interval = self.settings.daemon.heartbeat_interval
        since_status = 0.0
        while True:
            self.health.check()
            await self._write_heartbeat("running")
            await self.clock.sleep(interval)
            since_status += interval
            if since_status >= _STATUS_LOG_EVERY_S:
                since_status = 0.0
                self.log.info("status", **self._status())

    def _status(self) -> dict[str, Any]:
        return {
            "trading": self.risk.state.value,
            "kill_switch": self.risk.killed,
            "strategies": {sid: h.status.value for sid, h in self.host.strategies.items()},
            "market_events": sum(f.events for f in self.feeds),
            "open_orders": len(self.gateway.open_orders()),
            "fills": self._fills,
            "bus_handler_errors": sum(self.bus.handler_errors.values()),
        }

    async def _write_heartbeat(self, state: str) -> None:
        # The snapshot is taken on the loop; only the file write goes to a thread.
        health = self.health.last.as_status()
        health["reason"] = self._redactor.scrub(str(health["reason"]))
        status = {"state": state, "pid": os.getpid(), **self._status(), **health}
        try:
            await asyncio.to_thread(
                write_heartbeat, self.settings.daemon.data_dir, self.clock.time_ns(), status
            )
        except OSError as exc:
            self.log.warning("heartbeat write failed", error=str(exc))

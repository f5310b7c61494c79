"""Composition root: builds every part of the daemon, supervises it, shuts it down in order."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
from collections.abc import Mapping
from typing import IO, Any

import structlog

from botd.bus import Bus
from botd.clock import Clock
from botd.errors import ConfigError
from botd.feeds.bars import BarAggregator
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway
from botd.gateway.ids import ClientIdFactory, session_tag
from botd.health import write_heartbeat
from botd.loopmon import LoopLagMonitor
from botd.model import Fill
from botd.schedule import Scheduler
from botd.sdnotify import SdNotifier, run_watchdog
from botd.settings import Settings
from botd.strategy.host import HostLimits, StrategyHost, StrategyStatus
from botd.strategy.manager import StrategyManager
from botd.venues.base import VenueAdapter
from botd.venues.sim.paper import PaperVenue, UnknownSymbol

__all__ = ["EX_CONFIG", "EX_OK", "EX_SOFTWARE", "EX_TEMPFAIL", "Daemon"]

# Exit codes after sysexits.h, so systemd can tell a bad config (do not restart) from a crash.
EX_OK = 0
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78

_STATUS_LOG_EVERY_S = 30.0


class DataDirLocked(RuntimeError):
    pass


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        environ: Mapping[str, str],
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.log = log or structlog.get_logger("botd")
        self.notifier = SdNotifier.from_environ(environ)
        self.bus = Bus()
        self.venues: dict[str, VenueAdapter] = {}
        self._stop = asyncio.Event()
        self._rescan = asyncio.Event()
        self._stop_reason = ""
        self._fills = 0
        self._lock_file: IO[str] | None = None
        self._main_task: asyncio.Task[Any] | None = None

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.settings
        try:
            paper = PaperVenue(
                clock=self.clock,
                symbols=s.paper.symbols,
                seed=s.paper.seed,
                event_rate=s.paper.event_rate,
                maker_fee=s.paper.maker_fee,
                taker_fee=s.paper.taker_fee,
                balances=s.paper.balances,
            )
        except UnknownSymbol as exc:
            raise ConfigError(f"paper.symbols: {exc}") from None
        self.venues[paper.name] = paper
        self.gateway = Gateway(
            bus=self.bus,
            clock=self.clock,
            venues=self.venues,
            ids=ClientIdFactory(session_tag(self.clock.time_ns())),
        )
        self.bars = BarAggregator(self.bus, self.clock)
        self.scheduler = Scheduler(self.clock)
        rt = s.runtime
        self.host = StrategyHost(
            bus=self.bus,
            clock=self.clock,
            orders=self.gateway,
            market=self.gateway,
            bars=self.bars,
            scheduler=self.scheduler,
            overrides=s.strategies,
            limits=HostLimits(
                max_errors=rt.max_errors,
                error_window_s=rt.error_window,
                hook_budget_ms=rt.hook_budget_ms,
                max_overruns=rt.max_overruns,
            ),
        )
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
        self.feeds = [
            FeedRunner(
                adapter=paper,
                symbols=s.paper.symbols,
                bus=self.bus,
                clock=self.clock,
                rng=rng,
            )
        ]
        self.bus.subscribe(Fill, self._count_fill, name="daemon.fill_counter")

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
            self._build()
            return await self._supervise()
        finally:
            for venue in self.venues.values():
                with contextlib.suppress(Exception):
                    await venue.close()
            self.notifier.close()
            if self._lock_file is not None:
                self._lock_file.close()

    async def _supervise(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._rescan.set)
        self.log.info(
            "botd starting",
            venues=list(self.venues),
            symbols=self.settings.paper.symbols,
            strategies_dir=str(self.settings.daemon.strategies_dir),
            data_dir=str(self.settings.daemon.data_dir),
        )
        for venue in self.venues.values():
            await venue.connect()
        try:
            async with asyncio.TaskGroup() as tg:
                gateway_task = tg.create_task(self.gateway.run(), name="gateway")
                feed_tasks = [tg.create_task(f.run(), name="feed") for f in self.feeds]
                aux = [
                    tg.create_task(self._heartbeat(), name="heartbeat"),
                    tg.create_task(self.bars.run(), name="bars"),
                    tg.create_task(self.lag.run(), name="loop-lag"),
                ]
                if self.notifier.watchdog_interval() is not None:
                    aux.append(
                        tg.create_task(
                            run_watchdog(
                                self.notifier,
                                self.clock,
                                lambda: (
                                    not gateway_task.done()
                                    and not any(t.done() for t in feed_tasks)
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
                self.log.info("botd ready", strategies=running)
                await self._wait_for_stop()
                await self._shutdown(inputs)
                for task in [gateway_task, *aux]:
                    task.cancel()
                await self.scheduler.close()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        await self._write_heartbeat("stopped")
        self.log.info("botd stopped", reason=self._stop_reason, fills=self._fills)
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

    async def _wait_for_stop(self) -> None:
        while not self._stop.is_set():
            rescan = asyncio.ensure_future(self._rescan.wait())
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({rescan, stop}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (rescan, stop):
                fut.cancel()
            if self._rescan.is_set() and not self._stop.is_set():
                self._rescan.clear()
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
                await self.scheduler.close()
                if s.cancel_orders_on_shutdown:
                    cancelled = self.gateway.cancel_all()
                    if cancelled:
                        self.log.info("cancelling open orders", count=cancelled)
                    await self.gateway.drain()
                    await self.gateway.wait_no_open_orders()
                await self.gateway.drain()
        except TimeoutError:
            left = self.gateway.open_orders()
            self.log.error(
                "shutdown budget exhausted",
                budget_s=budget,
                open_orders=[o.client_order_id for o in left],
            )

    async def _heartbeat(self) -> None:
        interval = self.settings.daemon.heartbeat_interval
        since_status = 0.0
        while True:
            await self._write_heartbeat("running")
            await self.clock.sleep(interval)
            since_status += interval
            if since_status >= _STATUS_LOG_EVERY_S:
                since_status = 0.0
                self.log.info("status", **self._status())

    def _status(self) -> dict[str, Any]:
        return {
            "strategies": {sid: h.status.value for sid, h in self.host.strategies.items()},
            "market_events": sum(f.events for f in self.feeds),
            "open_orders": len(self.gateway.open_orders()),
            "fills": self._fills,
            "bus_handler_errors": sum(self.bus.handler_errors.values()),
        }

    async def _write_heartbeat(self, state: str) -> None:
        # The snapshot is taken on the loop; only the file write goes to a thread.
        status = {"state": state, "pid": os.getpid(), **self._status()}
        try:
            await asyncio.to_thread(
                write_heartbeat, self.settings.daemon.data_dir, self.clock.time_ns(), status
            )
        except OSError as exc:
            self.log.warning("heartbeat write failed", error=str(exc))

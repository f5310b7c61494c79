"""Keeps the running strategies in step with the strategies folder.

``sync`` compares the whole folder with what runs (start-up, SIGHUP, a control command);
``watch`` reacts to file events as they happen. Either way a changed file is loaded and
validated first: only a version that imports, defines valid classes and accepts its settings
replaces the running one (which hands over ``self.state``). A broken edit is reported with file
and line while the previous version keeps trading.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from watchfiles import awatch

from botd.strategy.host import StrategyHost, StrategyStatus
from botd.strategy.loader import LoadedStrategy, LoadError, is_strategy_file, load_file

__all__ = ["StrategyManager"]


@dataclass(frozen=True, slots=True)
class _FileVersion:
    digest: str
    ids: tuple[str, ...]


class StrategyManager:
    def __init__(
        self,
        *,
        host: StrategyHost,
        folder: Path,
        settings: Mapping[str, Mapping[str, Any]],
        cancel_orders_on_removal: bool = True,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._host = host
        self._folder = folder
        self._settings = settings
        self._cancel_on_removal = cancel_orders_on_removal
        self._log = log or structlog.get_logger("botd.strategy")
        self._files: dict[Path, _FileVersion] = {}
        self.errors: dict[Path, list[LoadError]] = {}
        self._known: set[str] = set()  # every strategy id found in a file, running or not
        # Ids an operator disabled (control API); never started until enabled again. The app
        # persists the set in the journal.
        self.disabled: set[str] = set()
        self.sources: dict[str, Path] = {}  # every id found, and the file that defines it

    # -- full rescan ----------------------------------------------------------------------------
    def sync(self) -> None:
        present = sorted(p for p in self._folder.iterdir() if is_strategy_file(p) and p.is_file())
        for path in list(self._files):
            if path not in present:
                self._remove(path)
        for path in present:
            self._sync_file(path)
        for problem in self.unknown_classes(self._known):
            self._log.error("strategy instance not started", error=problem)

    # -- file events ----------------------------------------------------------------------------
    def apply_changes(self, paths: Iterable[Path]) -> None:
        # Deletions first, so a rename stops the old id before the new file is loaded.
        ordered = sorted(set(paths), key=lambda p: (p.exists(), str(p)))
        for path in ordered:
            if not is_strategy_file(path):
                continue
            if path.exists():
                self._sync_file(path)
            elif path in self._files:
                self._remove(path)

    async def watch(self, *, step_ms: int = 200, debounce_ms: int = 1600) -> None:
        """Follow the folder with inotify (via watchfiles) until cancelled.

        Changes are grouped until the folder has been quiet for ``step_ms``, which absorbs
        editors' write patterns (truncate + write, temp file + rename, several saves).
        """
        changes_iter = awatch(
            self._folder,
            watch_filter=lambda change, path: is_strategy_file(Path(path)),
            step=step_ms,
            debounce=debounce_ms,
            recursive=False,
        )
        pending = asyncio.ensure_future(anext(changes_iter))
        try:
            # The inotify watch exists once the iterator has started; anything that changed
            # between the start-up scan and now is caught by one more scan.
            for _ in range(2):
                await asyncio.sleep(0)
            self._log.info("watching strategies folder", folder=str(self._folder))
            self.sync()
            while True:
                changes = await pending
                pending = asyncio.ensure_future(anext(changes_iter))
                self.apply_changes(Path(p) for _, p in changes)
        finally:
            pending.cancel()

    # -- operator commands (control API) --------------------------------------------------------
    def disable(self, strategy_id: str) -> None:
        """Stop a strategy (its orders cancelled) and keep it stopped across reloads."""
        self._require_known(strategy_id)
        self.disabled.add(strategy_id)
        self._host.stop(strategy_id, cancel_orders=True)
        self._log.warning("strategy disabled by an operator", strategy=strategy_id)

    def enable(self, strategy_id: str) -> None:
        """Start a disabled, halted or stopped strategy again from its file (not a running
        one). Raises ValueError saying why it did not start."""
        path = self._require_known(strategy_id)
        self.disabled.discard(strategy_id)
        if self._host.is_running(strategy_id):
            return
        if self._settings.get(strategy_id, {}).get("enabled", True) is False:
            raise ValueError(f"disabled in the settings (strategies.{strategy_id}.enabled)")
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        loaded, errors = load_file(path)
        loaded = [*loaded, *self._instances_of(loaded)]
        item = next((i for i in loaded if i.id == strategy_id), None)
        if errors or item is None:
            problem = "; ".join(str(e) for e in errors) or f"{path} no longer defines it"
            raise ValueError(problem)
        if self._host.start(item) is None:
            raise ValueError("it did not start (see the log)")
        self._log.warning("strategy enabled by an operator", strategy=strategy_id)
        previous = self._files.get(path)
        ids = previous.ids if previous is not None else ()
        self._files[path] = _FileVersion(
            previous.digest if previous is not None else digest,
            (*ids, strategy_id) if strategy_id not in ids else ids,
        )

    def reload(self, strategy_id: str) -> list[LoadError]:
        """Load the strategy's file again now, as if it had been saved (every strategy in that
        file reloads). Returns the file's problems; with any, the running version stays."""
        path = self._require_known(strategy_id)
        previous = self._files.get(path)
        if previous is not None:
            self._files[path] = _FileVersion("", previous.ids)  # forget the digest: re-read
        self._sync_file(path)
        return list(self.errors.get(path, []))

    def _require_known(self, strategy_id: str) -> Path:
        path = self.sources.get(strategy_id)
        if path is None:
            raise KeyError(strategy_id)
        return path

    # -- internals ------------------------------------------------------------------------------
    def _sync_file(self, path: Path) -> None:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:  # vanished between the event and now, or unreadable
            self._log.warning("strategy file unreadable", file=str(path), error=str(exc))
            return
        previous = self._files.get(path)
        if previous is not None and previous.digest == digest:
            return
        loaded, errors = load_file(path)
        self._known.update(item.id for item in loaded)
        loaded = [*loaded, *self._instances_of(loaded)]
        self.sources.update((item.id, path) for item in loaded)
        for item in loaded:
            if item.id in self.disabled:
                self._log.info("strategy disabled by an operator; not started", strategy=item.id)
        loaded = [item for item in loaded if item.id not in self.disabled]
        errors = [*errors, *self._duplicates(path, loaded)]
        if errors:
            self.errors[path] = errors
            for error in errors:
                self._log.error(
                    "strategy file not loaded",
                    file=str(error.path),
                    line=error.line,
                    column=error.column,
                    error=error.message,
                )
            if previous is not None:
                self._log.warning(
                    "keeping the previous version running",
                    file=str(path),
                    strategies=list(previous.ids),
                )
                return
            loaded = [item for item in loaded if not self._host.is_running(item.id)]
        else:
            self.errors.pop(path, None)

        started: list[str] = []
        for item in loaded:
            if self._host.is_running(item.id):
                prepared = self._host.prepare(item)
                if prepared is None:
                    self._log.warning("keeping the previous version running", strategy=item.id)
                    started.append(item.id)
                    continue
                self._host.replace(prepared)
                self._log.info("strategy reloaded", strategy=item.id, file=str(path))
                started.append(item.id)
            elif self._host.start(item) is not None:
                started.append(item.id)
        if previous is not None:
            for sid in previous.ids:
                if sid not in started:
                    self._host.stop(sid, cancel_orders=self._cancel_on_removal)
        if not errors:
            self._files[path] = _FileVersion(digest, tuple(started))
        elif started:
            # Partly loaded: remember what runs so a deletion stops it; any edit re-reads.
            self._files[path] = _FileVersion("", tuple(started))

    def _remove(self, path: Path) -> None:
        version = self._files.pop(path, None)
        self.errors.pop(path, None)
        if version is None:
            return
        self._log.info("strategy file removed", file=str(path), strategies=list(version.ids))
        for sid in version.ids:
            self._host.stop(sid, cancel_orders=self._cancel_on_removal)

    def _instances_of(self, loaded: list[LoadedStrategy]) -> list[LoadedStrategy]:
        """Extra instances declared in settings: ``[strategies.eth_fast] class = "sma_cross"``."""
        by_id = {item.id: item for item in loaded}
        extra = []
        for sid, table in self._settings.items():
            base = table.get("class")
            if isinstance(base, str) and base in by_id and sid != base:
                extra.append(LoadedStrategy(sid, by_id[base].cls, by_id[base].path))
        return extra

    def _duplicates(self, path: Path, loaded: list[LoadedStrategy]) -> list[LoadError]:
        errors = []
        for item in loaded:
            hosted = self._host.strategies.get(item.id)
            if (
                hosted is not None
                and hosted.status is not StrategyStatus.STOPPED
                and hosted.source.path != path
            ):
                errors.append(
                    LoadError(
                        path,
                        None,
                        f"duplicate strategy id {item.id!r} (already running from "
                        f"{hosted.source.path})",
                    )
                )
        return errors

    def unknown_classes(self, known_ids: Iterable[str]) -> list[str]:
        """Settings instances whose ``class`` names no loaded strategy."""
        known = set(known_ids)
        return [
            f"strategies.{sid}.class: no strategy {table['class']!r} in {self._folder}"
            for sid, table in self._settings.items()
            if isinstance(table.get("class"), str) and table["class"] not in known
        ]

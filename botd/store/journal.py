"""The journal: orders, fills, positions, balances, strategy state and an event log in SQLite.

Why it looks like this:

* **Write-ahead for orders.** The gateway awaits :meth:`Journal.write_order` before a request
  leaves; the call returns only after ``COMMIT`` with ``synchronous=FULL`` (in WAL mode NORMAL
  may lose a committed transaction on power loss). If the journal cannot commit, nothing that
  depended on it may be sent: the write raises :class:`JournalError`, ``healthy`` turns False
  and every later durable write raises at once, so the daemon can halt to cancel-only.
* **One writer task, group commit.** Every write is queued to one task that takes everything
  queued, runs it in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` and only then resolves the durable
  writers' futures. Concurrent writers therefore share one fsync, and the order of writes is the
  order of the calls. SQLite has one writer at a time anyway; a single task means we never
  contend with ourselves for that lock.
* **Reads on a second connection** (``query_only``), so a long export or an API query never
  waits behind a commit and never holds the write lock. WAL lets it read while we write; it sees
  everything committed before the read started.
* aiosqlite runs each connection in its own thread, so no SQLite call (fsync, busy wait, VACUUM)
  blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TextIO, TypeAlias

import aiosqlite
import structlog

from botd.clock import Clock, perf_ns
from botd.errors import BotdError
from botd.model import Balance, Fill, Order, OrderStatus, Position
from botd.store.codec import (
    FILL_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    Row,
    balance_row,
    fill_row,
    order_row,
    position_row,
    record,
    row_balance,
    row_fill,
    row_order,
    row_position,
    text_cell,
)
from botd.store.schema import SCHEMA_VERSION, NewerSchemaError, migrate, schema_version

__all__ = ["JSONValue", "Journal", "JournalError", "JournalEvent"]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

DEFAULT_BUSY_TIMEOUT = 5.0
# Bounds one transaction (and so the latency of the writers queued behind it) under a burst;
# the rest of the queue goes into the next commit.
_MAX_BATCH = 1000


class JournalError(BotdError):
    """A write or the database failed: callers must not send anything that depended on it."""


@dataclass(frozen=True, slots=True)
class JournalEvent:
    id: int
    ts_ns: int
    kind: str
    data: dict[str, Any]


class _Kind(Enum):
    WRITE = "write"
    VACUUM = "vacuum"
    STOP = "stop"


@dataclass(eq=False, slots=True)
class _Op:
    """One queued write. ``sql``/``params`` for a plain statement (consecutive identical
    statements are sent as one ``executemany``), ``run`` for anything that needs a result."""

    what: str  # for error messages and logs: names the write, never carries values
    sql: str | None = None
    params: tuple[Any, ...] = ()
    run: Callable[[aiosqlite.Connection], Awaitable[Any]] | None = None
    future: asyncio.Future[Any] | None = None  # None: not awaited by anyone
    kind: _Kind = _Kind.WRITE


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


_ORDER_COLS = ", ".join(ORDER_COLUMNS)
_FILL_COLS = ", ".join(FILL_COLUMNS)
_POSITION_COLS = ", ".join(POSITION_COLUMNS)

# Every identifier interpolated below is one of our own constants; every value is a bound
# parameter. That is why the S608 (SQL injection) warnings are silenced on these lines.
_UPSERT_ORDER = (
    f"INSERT INTO orders ({_ORDER_COLS}) VALUES ({_placeholders(len(ORDER_COLUMNS))}) "  # noqa: S608
    "ON CONFLICT (client_order_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ORDER_COLUMNS[1:])
)
_INSERT_FILL = (
    f"INSERT OR IGNORE INTO fills ({_FILL_COLS}) "  # noqa: S608
    f"VALUES ({_placeholders(len(FILL_COLUMNS))})"
)
_UPSERT_POSITION = (
    f"INSERT INTO positions (strategy_id, {_POSITION_COLS}, ts_saved) "  # noqa: S608
    f"VALUES ({_placeholders(len(POSITION_COLUMNS) + 2)}) "
    "ON CONFLICT (strategy_id, venue, symbol) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*POSITION_COLUMNS[2:], "ts_saved"))
)
_UPSERT_KV = (
    "INSERT INTO kv (key, value, ts_saved) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, ts_saved = excluded.ts_saved"
)
_UPSERT_STATE = (
    "INSERT INTO strategy_state (strategy_id, state, ts_saved) VALUES (?, ?, ?) "
    "ON CONFLICT (strategy_id) DO UPDATE SET state = excluded.state, "
    "ts_saved = excluded.ts_saved"
)
_NEXT_SEQUENCE = (
    "INSERT INTO sequences (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value RETURNING value"
)
_SELECT_ORDERS = f"SELECT {_ORDER_COLS} FROM orders"  # noqa: S608
_SELECT_FILLS = f"SELECT {_FILL_COLS} FROM fills"  # noqa: S608
_SELECT_POSITIONS = f"SELECT strategy_id, {_POSITION_COLS} FROM positions"  # noqa: S608
_INSERT_EVENT = "INSERT INTO events (ts_ns, kind, data) VALUES (?, ?, ?)"
_INSERT_SNAPSHOT = "INSERT INTO balance_snapshots (venue, ts_ns) VALUES (?, ?)"
_INSERT_BALANCE = "INSERT INTO balances (snapshot_id, asset, free, locked) VALUES (?, ?, ?, ?)"

_OPEN_STATUSES = tuple(s.value for s in OrderStatus if s.is_open)
_EXPORT_CHUNK = 500


def _dumps(value: object) -> str:
    # Raises TypeError/ValueError in the caller, before anything is queued: a value that cannot
    # be stored is the caller's bug and must not poison the batch it would have joined.
    return json.dumps(value, separators=(",", ":"))


class Journal:
    """See the module docstring. Build with :meth:`open`; always :meth:`close`."""

    # False for a journal without an event log (a backtest's, in memory): writers may skip
    # building the entries, which :meth:`append_event` would drop.
    keeps_events: bool = True

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._log = log
        self._pending: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._healthy = True
        self._failure = ""
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._drop_logged = False
        self.commits = 0  # successful COMMITs: group commit shows as commits < writes
        self.dropped = 0  # fire-and-forget writes discarded because unhealthy or closed
        # Told (elapsed ns, writes) after each successful commit (metrics); None = off.
        self.on_commit: Callable[[int, int], None] | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._run_writer(), name="journal-writer"
        )

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> Journal:
        """Open (creating if needed) the journal at ``path`` and bring its schema up to date.

        ``busy_timeout`` (seconds) is how long a write waits for another process's lock before
        it fails (and the journal turns unhealthy).
        """
        path = Path(path)
        log = log or structlog.get_logger("botd.store")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the journal folder {path.parent}: {exc}") from exc
        timeout_ms = max(0, int(busy_timeout * 1000))
        writer: aiosqlite.Connection | None = None
        reader: aiosqlite.Connection | None = None
        try:
            # isolation_level=None: the sqlite3 module must not open transactions behind our
            # back; the writer issues BEGIN IMMEDIATE/COMMIT itself.
            writer = await aiosqlite.connect(path, isolation_level=None)
            await writer.execute(f"PRAGMA busy_timeout = {timeout_ms:d}")
            found = await schema_version(writer)
            if found > SCHEMA_VERSION:
                # Before anything touches the file: a newer botd's database is not ours to
                # change, not even its journal mode.
                raise NewerSchemaError(found, SCHEMA_VERSION)
            async with writer.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise JournalError(
                    f"{path}: cannot switch to WAL mode (got {row[0] if row else None!r}); "
                    "is it on a filesystem without shared-memory support?"
                )
            await writer.execute("PRAGMA synchronous = FULL")
            await writer.execute("PRAGMA foreign_keys = ON")
            applied = await migrate(writer)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute(f"PRAGMA busy_timeout = {timeout_ms:d}")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            for conn in (reader, writer):
                if conn is not None:
                    await _close_quietly(conn)
            if isinstance(exc, NewerSchemaError):
                raise JournalError(f"{path}: {exc}") from exc
            if isinstance(exc, sqlite3.Error | OSError):
                raise JournalError(f"cannot open the journal {path}: {exc}") from exc
            raise
        journal = cls(path, writer, reader, clock=clock, log=log)
        log.info(
            "journal opened",
            path=str(path),
            schema=SCHEMA_VERSION,
            migrated=applied or None,
        )
        return journal

    async def close(self) -> None:
        """Commit everything queued, stop the writer and close. Idempotent."""
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        if not self._task.done():
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._enqueue(_Op("close", future=done, kind=_Kind.STOP))
            try:
                await done
            except Exception as exc:
                self._log.error("journal close failed", path=str(self.path), error=str(exc))
        await _close_quietly(self._reader)
        await _close_quietly(self._writer)
        self._log.info("journal closed", path=str(self.path), commits=self.commits)

    @property
    def healthy(self) -> bool:
        """False after any failed commit, for good: restart to recover (reads keep working).

        Also False if the writer task died without :meth:`close` (cancelled by a loop teardown,
        even before it first ran): nothing would be committed any more."""
        return self._healthy and (self._closing or not self._task.done())

    @property
    def backlog(self) -> int:
        """Writes queued and not yet taken by the writer."""
        return len(self._pending)

    # -- durable writes -------------------------------------------------------------------------
    async def write_order(self, order: Order) -> None:
        """Upsert ``order`` (every field) by client order id; returns after COMMIT."""
        await self._durable(
            _Op(f"order {order.client_order_id}", sql=_UPSERT_ORDER, params=order_row(order))
        )

    async def write_fill(self, fill: Fill) -> bool:
        """Record ``fill`` once per ``(venue, trade_id, client_order_id)``; True if it was new."""
        params = fill_row(fill)

        async def run(conn: aiosqlite.Connection) -> bool:
            async with conn.execute(_INSERT_FILL, params) as cur:
                return cur.rowcount == 1

        new: bool = await self._durable(_Op(f"fill {fill.venue}/{fill.trade_id}", run=run))
        return new

    async def set_value(self, key: str, value: JSONValue) -> None:
        await self._durable(
            _Op(f"value {key}", sql=_UPSERT_KV, params=(key, _dumps(value), self._now()))
        )

    async def save_strategy_state(self, strategy_id: str, state: Mapping[str, Any]) -> None:
        await self._durable(
            _Op(
                f"state of strategy {strategy_id}",
                sql=_UPSERT_STATE,
                params=(strategy_id, _dumps(dict(state)), self._now()),
            )
        )

    async def save_balances(self, venue: str, balances: Mapping[str, Balance], ts_ns: int) -> None:
        """Store one snapshot of ``venue``'s balances (keyed by ``Balance.asset``); the latest
        saved snapshot is what :meth:`latest_balances` returns, even an empty one."""
        rows = list({b.asset: balance_row(b) for b in balances.values()}.values())

        async def run(conn: aiosqlite.Connection) -> None:
            async with conn.execute(_INSERT_SNAPSHOT, (venue, int(ts_ns))) as cur:
                snapshot_id = cur.lastrowid
            await conn.executemany(_INSERT_BALANCE, [(snapshot_id, *r) for r in rows])

        await self._durable(_Op(f"balances of {venue}", run=run))

    async def save_position(self, strategy_id: str, position: Position) -> None:
        params = (strategy_id, *position_row(position), self._now())
        await self._durable(
            _Op(
                f"position {strategy_id}/{position.venue}/{position.symbol}",
                sql=_UPSERT_POSITION,
                params=params,
            )
        )

    async def next_sequence(self, name: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive numbers of the counter ``name`` (the first is 1) and
        return the first. Reserved numbers are never handed out again, even after a crash."""
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")

        async def run(conn: aiosqlite.Connection) -> int:
            async with conn.execute(_NEXT_SEQUENCE, (name, count)) as cur:
                row = await cur.fetchone()
            assert row is not None  # RETURNING always yields the upserted row
            return int(row[0]) - count + 1

        first: int = await self._durable(_Op(f"sequence {name}", run=run))
        return first

    async def flush(self) -> None:
        """Return when everything enqueued before this call is committed."""
        await self._durable(_Op("flush"))

    # -- ordered, not awaited -------------------------------------------------------------------
    def update_order(self, order: Order) -> None:
        """Queue an upsert of ``order`` behind every write already queued; it is committed with
        the next batch. Never raises on a journal failure (the caller is typically applying a
        venue report and must keep going); such writes are counted in ``dropped``."""
        self._fire(
            _Op(f"order {order.client_order_id}", sql=_UPSERT_ORDER, params=order_row(order))
        )

    def append_event(self, kind: str, data: Mapping[str, Any], ts_ns: int | None = None) -> None:
        """Append to the event log (never updated or deleted). ``ts_ns`` defaults to now."""
        ts = self._now() if ts_ns is None else int(ts_ns)
        self._fire(_Op(f"event {kind}", sql=_INSERT_EVENT, params=(ts, kind, _dumps(dict(data)))))

    # -- reads ----------------------------------------------------------------------------------
    async def order(self, client_order_id: str) -> Order | None:
        rows = await self._read(_SELECT_ORDERS + " WHERE client_order_id = ?", (client_order_id,))
        return row_order(rows[0]) if rows else None

    async def orders(
        self, *, open_only: bool = False, venue: str | None = None, strategy_id: str | None = None
    ) -> list[Order]:
        where, params = self._order_filter(
            open_only=open_only, venue=venue, strategy_id=strategy_id
        )
        rows = await self._read(_SELECT_ORDERS + where + " ORDER BY ts_created, rowid", params)
        return [row_order(r) for r in rows]

    async def fills(
        self,
        *,
        venue: str | None = None,
        strategy_id: str | None = None,
        since_ns: int | None = None,
    ) -> list[Fill]:
        """Fills ordered by ``ts_event``, then arrival; ``since_ns`` is inclusive."""
        where, params = self._fill_filter(venue=venue, strategy_id=strategy_id, since_ns=since_ns)
        rows = await self._read(_SELECT_FILLS + where + " ORDER BY ts_event, id", params)
        return [row_fill(r) for r in rows]

    async def get_value(self, key: str) -> JSONValue | None:
        rows = await self._read("SELECT value FROM kv WHERE key = ?", (key,))
        if not rows:
            return None
        value: JSONValue = json.loads(rows[0][0])
        return value

    async def strategy_states(self) -> dict[str, dict[str, Any]]:
        rows = await self._read("SELECT strategy_id, state FROM strategy_state")
        return {r[0]: json.loads(r[1]) for r in rows}

    async def positions(self) -> dict[tuple[str, str, str], Position]:
        rows = await self._read(_SELECT_POSITIONS)
        return {(r[0], r[1], r[2]): row_position(r[1:]) for r in rows}

    async def latest_balances(self, venue: str) -> dict[str, Balance]:
        rows = await self._read(
            "SELECT asset, free, locked FROM balances WHERE snapshot_id = "
            "(SELECT id FROM balance_snapshots WHERE venue = ? ORDER BY id DESC LIMIT 1) "
            "ORDER BY asset",
            (venue,),
        )
        return {r[0]: row_balance(r) for r in rows}

    async def events(
        self,
        *,
        since_id: int = 0,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[JournalEvent]:
        """Events with ``id > since_id``, oldest first."""
        sql = "SELECT id, ts_ns, kind, data FROM events WHERE id > ?"
        params: list[Any] = [since_id]
        if kinds is not None:
            kind_list = list(kinds)
            if not kind_list:
                return []
            sql += f" AND kind IN ({_placeholders(len(kind_list))})"
            params += kind_list
        sql += " ORDER BY id"
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must not be negative, not {limit}")
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._read(sql, params)
        return [JournalEvent(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def export(
        self, what: Literal["orders", "fills"], fmt: Literal["csv", "json"], out: TextIO
    ) -> int:
        """Write every order or fill to ``out``; return the number of rows (header excluded).

        CSV has a header of field names; JSON is one object per line. Decimals are written as
        exact strings in both.
        """
        columns: tuple[str, ...]
        convert: Callable[[Row], Order | Fill]
        if what == "orders":
            columns, convert = ORDER_COLUMNS, row_order
            sql = _SELECT_ORDERS + " ORDER BY ts_created, rowid"
        elif what == "fills":
            columns, convert = FILL_COLUMNS, row_fill
            sql = _SELECT_FILLS + " ORDER BY ts_event, id"
        else:
            raise ValueError(f"cannot export {what!r}: choose orders or fills")
        if fmt not in ("csv", "json"):
            raise ValueError(f"unknown export format {fmt!r}: choose csv or json")
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(columns)
        count = 0
        reader = self._require_reader()
        try:
            # Chunked, so exporting years of fills does not hold them all in memory.
            async with reader.execute(sql) as cur:
                while rows := await cur.fetchmany(_EXPORT_CHUNK):
                    for r in rows:
                        rec = record(convert(r))
                        if writer is not None:
                            writer.writerow([text_cell(rec[c]) for c in columns])
                        else:
                            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
                        count += 1
        except sqlite3.Error as exc:
            raise JournalError(f"journal export of {what} failed: {exc}") from exc
        return count

    async def vacuum(self) -> None:
        """Rebuild the database file (after everything queued is committed) and truncate the
        WAL. A failed vacuum raises JournalError but leaves the journal healthy: VACUUM is
        atomic and commits nothing of ours."""
        await self._durable(_Op("vacuum", kind=_Kind.VACUUM))

    # -- internals ------------------------------------------------------------------------------
    def _now(self) -> int:
        return self._clock.time_ns()

    def _check_writable(self) -> None:
        if self._closing:
            raise JournalError(f"the journal {self.path} is closed")
        if not self._healthy:
            raise JournalError(
                f"the journal is unhealthy after an earlier failure: {self._failure}"
            )
        if self._task.done():  # cannot happen without one of the above; never hang on it
            raise JournalError("the journal writer is not running")

    def _enqueue(self, op: _Op) -> None:
        self._pending.append(op)
        self._wake.set()

    async def _durable(self, op: _Op) -> Any:
        self._check_writable()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        op.future = fut
        self._enqueue(op)
        # If the caller is cancelled here the write still happens: it is already queued, and
        # a half-known outcome is exactly what write-ahead must never produce silently.
        return await fut

    def _fire(self, op: _Op) -> None:
        if self._closing or not self._healthy or self._task.done():
            self._drop(op, "closed" if self._closing else "unhealthy")
            return
        self._enqueue(op)

    def _drop(self, op: _Op, why: str) -> None:
        self.dropped += 1
        if not self._drop_logged:
            # Once: after a failure every status update would otherwise log a line.
            self._drop_logged = True
            self._log.warning(
                "journal write dropped", write=op.what, reason=why, path=str(self.path)
            )

    def _require_reader(self) -> aiosqlite.Connection:
        if self._close_task is not None and self._close_task.done():
            raise JournalError(f"the journal {self.path} is closed")
        return self._reader

    async def _read(self, sql: str, params: Collection[Any] = ()) -> list[Any]:
        reader = self._require_reader()
        try:
            return list(await reader.execute_fetchall(sql, tuple(params)))
        except (sqlite3.Error, ValueError) as exc:
            # ValueError: aiosqlite's "Connection closed" when close() won the race.
            raise JournalError(f"journal read failed: {exc}") from exc

    @staticmethod
    def _order_filter(
        *, open_only: bool, venue: str | None, strategy_id: str | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if open_only:
            clauses.append(f"status IN ({_placeholders(len(_OPEN_STATUSES))})")
            params += _OPEN_STATUSES
        if venue is not None:
            clauses.append("venue = ?")
            params.append(venue)
        if strategy_id is not None:
            clauses.append("strategy_id = ?")
            params.append(strategy_id)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    @staticmethod
    def _fill_filter(
        *, venue: str | None, strategy_id: str | None, since_ns: int | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if venue is not None:
            clauses.append("venue = ?")
            params.append(venue)
        if strategy_id is not None:
            clauses.append("strategy_id = ?")
            params.append(strategy_id)
        if since_ns is not None:
            clauses.append("ts_event >= ?")
            params.append(since_ns)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    async def _run_writer(self) -> None:
        try:
            while True:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                head = self._pending[0]
                if head.kind is _Kind.STOP:
                    self._pending.popleft()
                    _resolve(head, None)
                    return
                if head.kind is _Kind.VACUUM:
                    self._pending.popleft()
                    await self._vacuum_now(head)
                    continue
                batch: list[_Op] = []
                while (
                    self._pending
                    and len(batch) < _MAX_BATCH
                    and self._pending[0].kind is _Kind.WRITE
                ):
                    batch.append(self._pending.popleft())
                if self._healthy:
                    await self._commit(batch)
                else:
                    self._reject(batch)
        except BaseException as exc:
            # Cancelled (loop teardown without close) or a bug in here: either way nothing will
            # be committed any more, so nobody may wait forever and nobody may believe a write
            # is durable.
            if self._healthy:
                self._healthy = False
                self._failure = f"the journal writer stopped ({type(exc).__name__}: {exc})"
                self._log.error("journal writer stopped", path=str(self.path), error=self._failure)
            pending = list(self._pending)
            self._pending.clear()
            self._reject(pending)
            raise

    async def _commit(self, batch: list[_Op]) -> None:
        conn = self._writer
        results: list[Any] = [None] * len(batch)
        started = perf_ns()
        elapsed: int | None = None
        try:
            # A batch of flushes only has nothing to commit: everything before it already is.
            if any(op.sql is not None or op.run is not None for op in batch):
                await conn.execute("BEGIN IMMEDIATE")
                i = 0
                while i < len(batch):
                    op = batch[i]
                    if op.sql is not None:
                        # A run of plain statements goes down to the connection thread as one
                        # executemany per statement. Each statement writes its own table, so
                        # grouping them keeps every table's order (and the final state) while
                        # an interleaved burst (order upserts and events) costs a few thread
                        # hops instead of one per write.
                        j = i
                        groups: dict[str, list[Any]] = {}
                        while j < len(batch) and batch[j].sql is not None:
                            groups.setdefault(batch[j].sql, []).append(batch[j].params)  # type: ignore[arg-type]
                            j += 1
                        for sql, params in groups.items():
                            if len(params) == 1:
                                await conn.execute(sql, params[0])
                            else:
                                await conn.executemany(sql, params)
                        i = j
                        continue
                    if op.run is not None:
                        results[i] = await op.run(conn)
                    i += 1
                await conn.execute("COMMIT")
                self.commits += 1
                if self.on_commit is not None:
                    elapsed = perf_ns() - started
        except BaseException as exc:
            await self._rollback()
            if isinstance(exc, Exception):
                self._fail(batch, exc)
                return
            self._reject(batch, "the journal writer was cancelled during a commit")
            raise
        if elapsed is not None and self.on_commit is not None:
            with contextlib.suppress(Exception):  # an observer must never fail a commit
                self.on_commit(elapsed, len(batch))
        for op, result in zip(batch, results, strict=True):
            _resolve(op, result)

    async def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL, some I/O errors); a ROLLBACK
        # with no transaction open would only raise a second, misleading error.
        if not self._writer.in_transaction:
            return
        try:
            await self._writer.execute("ROLLBACK")
        except Exception as exc:
            self._log.error("journal rollback failed", path=str(self.path), error=str(exc))

    def _fail(self, batch: list[_Op], exc: Exception) -> None:
        names = ", ".join(op.what for op in batch[:3])
        if len(batch) > 3:
            names += f" and {len(batch) - 3} more"
        # sqlite3's messages ("database is locked", "database or disk is full") name the
        # failure, never the bound values; op names are ids, so no secret can reach the text.
        message = f"journal commit failed ({names}): {type(exc).__name__}: {exc}"
        self._healthy = False
        self._failure = message
        self._log.error(
            "journal commit failed", path=str(self.path), writes=len(batch), error=message
        )
        self._reject(batch, message, cause=exc)
        # Writes queued behind the failed batch were never attempted; fail them now rather
        # than at the writer's next turn so their callers learn at once.
        rest = [op for op in self._pending if op.kind is _Kind.WRITE]
        self._pending = deque(op for op in self._pending if op.kind is not _Kind.WRITE)
        self._reject(rest, message, cause=exc)

    def _reject(
        self, ops: list[_Op], message: str | None = None, cause: BaseException | None = None
    ) -> None:
        text = message or f"the journal is unhealthy after an earlier failure: {self._failure}"
        for op in ops:
            if op.future is None:
                self._drop(op, "unhealthy")
            elif not op.future.done():
                err = JournalError(text)
                err.__cause__ = cause
                op.future.set_exception(err)

    async def _vacuum_now(self, op: _Op) -> None:
        if not self._healthy:
            self._reject([op])
            return
        try:
            await self._writer.execute("VACUUM")
            await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:
            self._log.error("journal vacuum failed", path=str(self.path), error=str(exc))
            self._reject([op], f"journal vacuum failed: {type(exc).__name__}: {exc}", exc)
            return
        _resolve(op, None)


def _resolve(op: _Op, result: Any) -> None:
    # A caller cancelled while waiting has a cancelled future; its write happened anyway.
    if op.future is not None and not op.future.done():
        op.future.set_result(result)


async def _close_quietly(conn: aiosqlite.Connection) -> None:
    # Closing after a failure: the original error is the one worth reporting.
    with contextlib.suppress(Exception):
        await conn.close()

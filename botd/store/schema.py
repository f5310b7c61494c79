"""The journal's schema, as an ordered list of migrations keyed by ``PRAGMA user_version``.

Migration ``n`` (1-based) takes a database from version ``n - 1`` to ``n``. Never edit a
migration that has shipped: append a new one. Each runs in its own ``BEGIN IMMEDIATE``
transaction together with the ``user_version`` bump, so a crash or an error mid-migration leaves
the database at the previous version, never half-migrated.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "NewerSchemaError", "migrate", "schema_version"]

Migration = Sequence[str]

# Decimals are TEXT (exact round trip: "0.10" stays "0.10"), enums their value, times INTEGER ns.
# Columns holding Decimals are declared TEXT, not NUMERIC, so SQLite's type affinity never turns
# them into floats.
_V1: Migration = (
    """
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        strategy_id     TEXT NOT NULL,
        venue           TEXT NOT NULL,
        symbol          TEXT NOT NULL,
        side            TEXT NOT NULL,
        type            TEXT NOT NULL,
        qty             TEXT NOT NULL,
        price           TEXT,
        tif             TEXT NOT NULL,
        post_only       INTEGER NOT NULL,
        status          TEXT NOT NULL,
        filled_qty      TEXT NOT NULL,
        avg_fill_price  TEXT,
        venue_order_id  TEXT,
        reason          TEXT NOT NULL,
        ts_created      INTEGER NOT NULL,
        ts_updated      INTEGER NOT NULL
    )
    """,
    # Startup reconciliation asks for the open orders of one venue; an IN list over the open
    # statuses seeks this index once per status instead of scanning every order ever sent.
    "CREATE INDEX orders_status_venue ON orders (status, venue)",
    "CREATE INDEX orders_strategy ON orders (strategy_id, ts_created)",
    "CREATE INDEX orders_venue_order_id ON orders (venue, venue_order_id)",
    """
    CREATE TABLE fills (
        id              INTEGER PRIMARY KEY,
        venue           TEXT NOT NULL,
        trade_id        TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        strategy_id     TEXT NOT NULL,
        symbol          TEXT NOT NULL,
        side            TEXT NOT NULL,
        qty             TEXT NOT NULL,
        price           TEXT NOT NULL,
        fee             TEXT NOT NULL,
        fee_asset       TEXT NOT NULL,
        liquidity       TEXT NOT NULL,
        venue_order_id  TEXT NOT NULL,
        ts_event        INTEGER NOT NULL,
        ts_recv         INTEGER NOT NULL,
        UNIQUE (venue, trade_id)
    )
    """,
    # No foreign key to orders on purpose: reconciliation may record a fill of an order that
    # the journal never saw, and a constraint failure would poison the whole group commit.
    "CREATE INDEX fills_time ON fills (ts_event)",
    "CREATE INDEX fills_strategy_time ON fills (strategy_id, ts_event)",
    "CREATE INDEX fills_order ON fills (client_order_id)",
    """
    CREATE TABLE positions (
        strategy_id   TEXT NOT NULL,
        venue         TEXT NOT NULL,
        symbol        TEXT NOT NULL,
        qty           TEXT NOT NULL,
        avg_price     TEXT NOT NULL,
        realized_pnl  TEXT NOT NULL,
        fees_quote    TEXT NOT NULL,
        min_tradable  TEXT NOT NULL,
        ts_saved      INTEGER NOT NULL,
        PRIMARY KEY (strategy_id, venue, symbol)
    )
    """,
    # A snapshot header row, so that an empty snapshot (everything sold, all zero) is still the
    # latest one rather than letting an older non-empty snapshot show through.
    """
    CREATE TABLE balance_snapshots (
        id     INTEGER PRIMARY KEY,
        venue  TEXT NOT NULL,
        ts_ns  INTEGER NOT NULL
    )
    """,
    "CREATE INDEX balance_snapshots_venue ON balance_snapshots (venue, id)",
    """
    CREATE TABLE balances (
        snapshot_id INTEGER NOT NULL REFERENCES balance_snapshots (id),
        asset       TEXT NOT NULL,
        free        TEXT NOT NULL,
        locked      TEXT NOT NULL,
        PRIMARY KEY (snapshot_id, asset)
    )
    """,
    """
    CREATE TABLE strategy_state (
        strategy_id TEXT PRIMARY KEY,
        state       TEXT NOT NULL,
        ts_saved    INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE kv (
        key       TEXT PRIMARY KEY,
        value     TEXT NOT NULL,
        ts_saved  INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE sequences (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE events (
        id    INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        kind  TEXT NOT NULL,
        data  TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_kind ON events (kind, id)",
    # The event log is evidence for post-mortems: the database itself refuses to rewrite it,
    # whatever code (ours, a future migration by mistake, an operator's sqlite3 shell) tries.
    """
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END
    """,
    """
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END
    """,
)

# Stop and stop-limit orders: their trigger price (NULL for every other type and for every
# order journaled before stops existed).
_V2: Migration = ("ALTER TABLE orders ADD COLUMN stop_price TEXT",)

# Fills unique per (venue, trade id, client order id), no longer per (venue, trade id): a
# self-trade (two of our orders crossing) is one trade id with two executions of ours, and the
# second side was silently dropped. SQLite cannot drop a table constraint, so the table is
# rebuilt (same columns, same rows) and its indexes recreated.
_V3: Migration = (
    """
    CREATE TABLE fills_v3 (
        id              INTEGER PRIMARY KEY,
        venue           TEXT NOT NULL,
        trade_id        TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        strategy_id     TEXT NOT NULL,
        symbol          TEXT NOT NULL,
        side            TEXT NOT NULL,
        qty             TEXT NOT NULL,
        price           TEXT NOT NULL,
        fee             TEXT NOT NULL,
        fee_asset       TEXT NOT NULL,
        liquidity       TEXT NOT NULL,
        venue_order_id  TEXT NOT NULL,
        ts_event        INTEGER NOT NULL,
        ts_recv         INTEGER NOT NULL,
        UNIQUE (venue, trade_id, client_order_id)
    )
    """,
    """
    INSERT INTO fills_v3 (
        id, venue, trade_id, client_order_id, strategy_id, symbol, side, qty, price, fee,
        fee_asset, liquidity, venue_order_id, ts_event, ts_recv
    )
    SELECT
        id, venue, trade_id, client_order_id, strategy_id, symbol, side, qty, price, fee,
        fee_asset, liquidity, venue_order_id, ts_event, ts_recv
    FROM fills
    """,
    "DROP TABLE fills",
    "ALTER TABLE fills_v3 RENAME TO fills",
    "CREATE INDEX fills_time ON fills (ts_event)",
    "CREATE INDEX fills_strategy_time ON fills (strategy_id, ts_event)",
    "CREATE INDEX fills_order ON fills (client_order_id)",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


class NewerSchemaError(Exception):
    """The database was written by a botd that knows more migrations than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"written by a newer botd (schema {found}, this botd knows {known}); "
            "upgrade botd or point it at another data directory"
        )
        self.found = found
        self.known = known


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def migrate(
    conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Bring the database up to ``len(migrations)``; return the versions applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``): transactions are ours.
    Raises :class:`NewerSchemaError` for a database newer than ``migrations``, and whatever
    SQLite raised (after rolling back) if a migration fails.
    """
    known = len(migrations)
    applied: list[int] = []
    while True:
        # Checked before taking the write lock so that a read-only look at a newer database
        # (``botd db export`` against a newer data dir) fails without blocking a writer.
        if (await schema_version(conn)) >= known:
            break
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = await schema_version(conn)
            if current >= known:
                await conn.execute("COMMIT")
                break
            for statement in migrations[current]:
                await conn.execute(statement)
            # PRAGMA does not take bound parameters; the value is our own int.
            await conn.execute(f"PRAGMA user_version = {current + 1:d}")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        applied.append(current + 1)
    found = await schema_version(conn)
    if found > known:
        raise NewerSchemaError(found, known)
    return applied

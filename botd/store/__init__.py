"""The journal: durable orders, fills, positions, balances, strategy state and events."""

from botd.store.commands import DB_FILENAME
from botd.store.journal import Journal, JournalError, JournalEvent, JSONValue
from botd.store.schema import SCHEMA_VERSION

__all__ = ["DB_FILENAME", "SCHEMA_VERSION", "JSONValue", "Journal", "JournalError", "JournalEvent"]

"""``botd db path | export --orders|--fills [--csv] | vacuum``.

``cli.py`` adds the parser with :func:`add_db_parser` and, once it has the settings (and so the
data directory), hands over to :func:`run_db_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any, TextIO

import structlog

from botd.clock import LiveClock
from botd.store.journal import Journal, JournalError

__all__ = ["DB_FILENAME", "EX_IOERR", "EX_NOINPUT", "add_db_parser", "run_db_command"]

DB_FILENAME = "botd.db"
EX_OK = 0
EX_NOINPUT = 66  # sysexits.h: the input (the database) does not exist
EX_IOERR = 74  # sysexits.h: the database could not be read or written


def _settings_flags(p: argparse.ArgumentParser) -> None:
    # The same flags as every other settings-reading command: cli.py loads the settings (and so
    # finds the data directory) from them before it calls run_db_command.
    p.add_argument(
        "--config", type=Path, help="TOML settings file (default: ./botd.toml if present)"
    )
    p.add_argument("--strategies", type=Path, help="strategies folder (daemon.strategies_dir)")
    p.add_argument("--data-dir", type=Path, help="state folder (daemon.data_dir)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log.level")


def add_db_parser(subparsers: Any) -> None:
    """Add the ``db`` command to an ``ArgumentParser.add_subparsers()`` object."""
    db: argparse.ArgumentParser = subparsers.add_parser(
        "db", help="the journal database: show its path, export orders or fills, vacuum"
    )
    actions = db.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    path = actions.add_parser("path", help="print the absolute path of the journal database")
    _settings_flags(path)
    export = actions.add_parser(
        "export", help="write every order or fill to stdout (JSON lines, or CSV with --csv)"
    )
    _settings_flags(export)
    what = export.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--orders", dest="db_what", action="store_const", const="orders", help="export orders"
    )
    what.add_argument(
        "--fills", dest="db_what", action="store_const", const="fills", help="export fills"
    )
    export.add_argument(
        "--csv", dest="db_csv", action="store_true", help="CSV with a header instead of JSON"
    )
    vacuum = actions.add_parser(
        "vacuum", help="rebuild the database file to reclaim space (stop the daemon first)"
    )
    _settings_flags(vacuum)


def run_db_command(args: argparse.Namespace, data_dir: Path, stdout: TextIO, stderr: TextIO) -> int:
    db_path = (data_dir / DB_FILENAME).absolute()
    action: str = args.db_action
    if action == "path":
        print(db_path, file=stdout)
        return EX_OK
    # Opening would create an empty journal: a typo in --data-dir must not look like "no
    # orders yet".
    if not db_path.is_file():
        print(f"botd: no journal database at {db_path}", file=stderr)
        return EX_NOINPUT
    try:
        if action == "export":
            what = args.db_what
            fmt = "csv" if args.db_csv else "json"
            rows = asyncio.run(_export(db_path, what, fmt, stdout, quiet_log(stderr)))
            print(f"exported {rows} {what}", file=stderr)
        elif action == "vacuum":
            before = _size(db_path)
            asyncio.run(_vacuum(db_path, quiet_log(stderr)))
            print(f"vacuumed {db_path}: {before} -> {_size(db_path)} bytes", file=stderr)
        else:
            raise ValueError(f"unknown db action {action!r}")
    except JournalError as exc:
        print(f"botd: {exc}", file=stderr)
        return EX_IOERR
    return EX_OK


def quiet_log(stderr: TextIO) -> structlog.typing.FilteringBoundLogger:
    # Logging is not configured for these one-shot commands, and structlog's default writes to
    # stdout, into the middle of an export. Warnings and errors go to stderr; the rest is noise.
    log: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )
    return log


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def _export(
    db_path: Path, what: str, fmt: str, out: TextIO, log: structlog.typing.FilteringBoundLogger
) -> int:
    journal = await Journal.open(db_path, clock=LiveClock(), log=log)
    try:
        return await journal.export(
            "orders" if what == "orders" else "fills", "csv" if fmt == "csv" else "json", out
        )
    finally:
        await journal.close()


async def _vacuum(db_path: Path, log: structlog.typing.FilteringBoundLogger) -> None:
    journal = await Journal.open(db_path, clock=LiveClock(), log=log)
    try:
        await journal.vacuum()
    finally:
        await journal.close()

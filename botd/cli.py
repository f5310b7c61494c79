"""``botd`` command line. The only module that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

from botd.app import EX_CONFIG, EX_OK, EX_SOFTWARE, Daemon
from botd.backtest.cli import add_backtest_parser, run_backtest_command
from botd.clock import LiveClock
from botd.control.client import add_control_parsers, is_control_command, run_control_command
from botd.errors import AuthError, ConfigError
from botd.health import check_heartbeat
from botd.logs import Redactor, configure_logging
from botd.recordcli import add_record_parser, run_record
from botd.settings import Settings, SettingsError, load_settings, render_settings
from botd.simcli import add_sim_parser, run_sim_command
from botd.store.commands import add_db_parser, run_db_command
from botd.strategy.catalog import check_file, describe_folder

__all__ = ["main", "run_cli"]

EX_UNHEALTHY = 1
EX_DATAERR = 65  # sysexits.h: the input (a strategy file) is wrong


def _version() -> str:
    try:
        return version("botd")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="botd", description="Event-driven automated trading daemon."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", type=Path, help="TOML settings file (default: ./botd.toml if present)"
        )
        p.add_argument("--strategies", type=Path, help="strategies folder (daemon.strategies_dir)")
        p.add_argument("--data-dir", type=Path, help="state folder (daemon.data_dir)")
        p.add_argument(
            "--log-level", choices=["debug", "info", "warning", "error"], help="log.level"
        )

    run = sub.add_parser(
        "run", help="run the daemon (paper trading on the simulated exchange by default)"
    )
    config_flags(run)
    check = sub.add_parser("check-config", help="validate and print the effective configuration")
    config_flags(check)
    strategies = sub.add_parser("strategies", help="list or check strategy files")
    strat_sub = strategies.add_subparsers(
        dest="strategies_command", required=True, metavar="ACTION"
    )
    listing = strat_sub.add_parser(
        "list", help="every strategy in the folder, its params and status"
    )
    config_flags(listing)
    check_one = strat_sub.add_parser("check", help="load and validate one file without running it")
    config_flags(check_one)
    check_one.add_argument("file", type=Path)
    kill = sub.add_parser(
        "kill", help="kill switch: halt all trading and cancel every open order (persisted)"
    )
    config_flags(kill)
    kill.add_argument("--reason", default="operator kill switch (botd kill)")
    resume = sub.add_parser("resume", help="release the kill switch: trading resumes")
    config_flags(resume)
    resume.add_argument("--reason", default="operator released the kill switch (botd resume)")
    add_control_parsers(sub, config_flags, kill=kill, resume=resume, strategies=strat_sub)
    add_db_parser(sub)
    add_sim_parser(sub)
    add_backtest_parser(sub)
    config_flags(add_record_parser(sub))
    sub.add_parser("version", help="print the version")
    health = sub.add_parser(
        "health", help="exit 0 if a running daemon's heartbeat is fresh and says it is healthy"
    )
    config_flags(health)
    health.add_argument("--max-age", type=float, default=30.0, help="seconds (default 30)")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "strategies", None) is not None:
        out.setdefault("daemon", {})["strategies_dir"] = str(args.strategies)
    if getattr(args, "data_dir", None) is not None:
        out.setdefault("daemon", {})["data_dir"] = str(args.data_dir)
    if getattr(args, "log_level", None) is not None:
        out.setdefault("log", {})["level"] = args.log_level
    return out


def _load(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    return load_settings(args.config, _overrides(args), environ)


def run_cli(
    argv: Sequence[str] | None,
    *,
    environ: Mapping[str, str],
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"botd {_version()}", file=stdout)
        return EX_OK
    if args.command == "sim":
        return run_sim_command(args, stdout)
    if args.command == "backtest":
        return run_backtest_command(args, stdout, stderr)
    try:
        settings = _load(args, environ)
    except SettingsError as exc:
        print(f"botd: invalid configuration\n{exc}", file=stderr)
        return EX_CONFIG
    if args.command == "check-config":
        print(render_settings(settings), file=stdout)
        print("configuration OK", file=stderr)
        return EX_OK
    if is_control_command(args):  # kill and resume fall back to botd/operator.py offline
        return run_control_command(args, settings, stdout, stderr)
    if args.command == "db":
        return run_db_command(args, settings.daemon.data_dir, stdout, stderr)
    if args.command == "strategies":
        return _strategies(args, settings, stdout, stderr)
    if args.command == "record":
        return _record(args, settings, stdout, stderr)
    if args.command == "health":
        ok, message = check_heartbeat(settings.daemon.data_dir, LiveClock().time_ns(), args.max_age)
        print(message, file=stdout if ok else stderr)
        return EX_OK if ok else EX_UNHEALTHY
    return _run_daemon(settings, environ, stdout, stderr)


def _strategies(
    args: argparse.Namespace, settings: Settings, stdout: TextIO, stderr: TextIO
) -> int:
    if args.strategies_command == "list":
        infos, errors = describe_folder(settings.daemon.strategies_dir, settings.strategies)
    else:
        infos, errors = check_file(args.file, settings.strategies)
    rows = [("ID", "STATUS", "FILE", "CLASS", "MARKET", "BARS", "PARAMS")]
    rows += [
        (
            i.id,
            i.status,
            str(i.file),
            i.cls,
            f"{i.venue}:{','.join(i.symbols)}",
            i.timeframe,
            ", ".join(f"{k}={v}" for k, v in i.params.items()) or "-",
        )
        for i in infos
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    if infos:
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]), file=stdout)
    for info in infos:
        if info.problem:
            print(f"{info.file}: {info.problem}", file=stderr)
    for error in errors:
        print(str(error), file=stderr)
    bad = bool(errors) or any(i.status == "error" for i in infos)
    if args.strategies_command == "check" and not bad:
        print(f"{args.file}: OK ({len(infos)} strategies)", file=stderr)
    return EX_DATAERR if bad else EX_OK


def _record(args: argparse.Namespace, settings: Settings, stdout: TextIO, stderr: TextIO) -> int:
    secrets = settings.secret_values()
    configure_logging(settings.log.level, settings.log.format, secrets, stderr)
    redactor = Redactor(secrets)
    try:
        return asyncio.run(run_record(args, settings, LiveClock(), stdout))
    except ConfigError as exc:
        print(f"botd record: {redactor.scrub(str(exc))}", file=stderr)
        return EX_CONFIG
    except AuthError as exc:
        print(f"botd record: the venue refused the key: {redactor.scrub(str(exc))}", file=stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return EX_OK


def _run_daemon(
    settings: Settings, environ: Mapping[str, str], stdout: TextIO, stderr: TextIO
) -> int:
    secrets = settings.secret_values()
    configure_logging(settings.log.level, settings.log.format, secrets, stdout)
    redactor = Redactor(secrets)
    daemon = Daemon(settings, clock=LiveClock(), environ=environ)
    try:
        return asyncio.run(daemon.run())
    except ConfigError as exc:
        print(f"botd: invalid configuration\n{redactor.scrub(str(exc))}", file=stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return EX_OK
    except asyncio.CancelledError:
        # A second stop signal abandoned the orderly shutdown.
        return EX_SOFTWARE
    except BaseException as exc:  # the last line of defence: say what happened, scrubbed
        print(f"botd: fatal error: {redactor.scrub(repr(exc))}", file=stderr)
        return EX_SOFTWARE


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(argv, environ=os.environ, stdout=sys.stdout, stderr=sys.stderr))

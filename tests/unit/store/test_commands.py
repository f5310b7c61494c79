"""``botd db ...`` through argparse, as cli.py wires it."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.store import Journal
from botd.store.commands import DB_FILENAME, add_db_parser, run_db_command
from tests.unit.store.factories import make_fill, make_order


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="botd")
    sub = parser.add_subparsers(dest="command", required=True)
    add_db_parser(sub)
    return parser.parse_args(argv)


def run(argv: list[str], data_dir: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_db_command(parse(argv), data_dir, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    async def seed() -> None:
        j = await Journal.open(tmp_path / DB_FILENAME, clock=FakeClock())
        try:
            await j.write_order(make_order("o-1"))
            await j.write_fill(make_fill("t-1"))
        finally:
            await j.close()

    asyncio.run(seed())
    return tmp_path


def test_filename() -> None:
    assert DB_FILENAME == "botd.db"


def test_parser_shapes() -> None:
    args = parse(["db", "export", "--fills", "--csv", "--data-dir", "/x"])
    assert (args.command, args.db_action, args.db_what, args.db_csv) == (
        "db",
        "export",
        "fills",
        True,
    )
    assert args.data_dir == Path("/x")
    assert parse(["db", "export", "--orders"]).db_csv is False
    assert parse(["db", "path"]).config is None
    with pytest.raises(SystemExit):
        parse(["db", "export"])  # --orders or --fills is required
    with pytest.raises(SystemExit):
        parse(["db", "export", "--orders", "--fills"])
    with pytest.raises(SystemExit):
        parse(["db"])


def test_path_prints_the_absolute_path(tmp_path: Path) -> None:
    code, out, _ = run(["db", "path"], tmp_path / "nothing-here")
    assert code == 0
    assert out.strip() == str((tmp_path / "nothing-here" / DB_FILENAME).absolute())
    assert not (tmp_path / "nothing-here").exists()


def test_export_orders_json(data_dir: Path) -> None:
    code, out, err = run(["db", "export", "--orders"], data_dir)
    assert code == 0, err
    assert [json.loads(line)["client_order_id"] for line in out.splitlines()] == ["o-1"]
    assert "exported 1 orders" in err


def test_export_fills_csv(data_dir: Path) -> None:
    code, out, err = run(["db", "export", "--fills", "--csv"], data_dir)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["trade_id"] for r in rows] == ["t-1"]
    assert rows[0]["fee"] == "0.00000400"


def test_vacuum(data_dir: Path) -> None:
    code, _, err = run(["db", "vacuum"], data_dir)
    assert code == 0, err
    assert "vacuumed" in err
    code, out, _ = run(["db", "export", "--orders"], data_dir)
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize("argv", [["db", "export", "--orders"], ["db", "vacuum"]])
def test_missing_database_is_ex_noinput_and_not_created(tmp_path: Path, argv: list[str]) -> None:
    code, out, err = run(argv, tmp_path)
    assert code == 66
    assert out == ""
    assert "no journal database" in err
    assert not (tmp_path / DB_FILENAME).exists()


def test_journal_error_is_ex_ioerr(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / DB_FILENAME)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    code, out, err = run(["db", "export", "--orders"], data_dir)
    assert code == 74
    assert out == ""
    assert "newer botd" in err

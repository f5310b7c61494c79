from pathlib import Path
from textwrap import dedent

from botd.strategy.loader import scan

GOOD = """
from decimal import Decimal
from botd import Strategy, param

class Good(Strategy):
    api_version = 1
    symbol = "BTCUSDT"
    size = param(Decimal("0.001"))
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(dedent(text))
    return path


def test_good_file_loads_with_its_stem_as_id(tmp_path: Path) -> None:
    write(tmp_path, "dip.py", GOOD)
    result = scan(tmp_path)
    assert result.errors == []
    assert [(s.id, s.cls.__name__) for s in result.strategies] == [("dip", "Good")]


def test_syntax_error_reports_file_and_line_and_others_still_load(tmp_path: Path) -> None:
    write(tmp_path, "a_good.py", GOOD)
    bad = write(tmp_path, "b_bad.py", "from botd import Strategy\n\nclass X(Strategy)\n    pass\n")
    result = scan(tmp_path)
    assert [s.id for s in result.strategies] == ["a_good"]
    (error,) = result.errors
    assert error.path == bad
    assert error.line == 3
    assert "syntax error" in error.message
    assert str(error).startswith(f"{bad}:3:18: ")  # line and column


def test_import_time_exception_points_at_the_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "boom.py", "import math\n\nx = 1\ny = 1 / 0\n")
    (error,) = scan(tmp_path).errors
    assert (error.path, error.line) == (bad, 4)
    assert "ZeroDivisionError" in error.message


def test_missing_module_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "needs.py", "import does_not_exist_anywhere\n")
    (error,) = scan(tmp_path).errors
    assert "ModuleNotFoundError" in error.message
    assert error.line == 1


def test_wrong_api_version_says_what_to_change(tmp_path: Path) -> None:
    write(tmp_path, "old.py", GOOD.replace("api_version = 1", "api_version = 0"))
    (error,) = scan(tmp_path).errors
    assert "set `api_version = 1`" in error.message
    assert error.line == 5


def test_only_classes_defined_in_the_file_count(tmp_path: Path) -> None:
    write(tmp_path, "base_lib.py", GOOD)
    # Imports another plugin's class: it must not be registered twice under this file.
    write(
        tmp_path,
        "user.py",
        """
        from botd import Strategy

        class Mine(Strategy):
            symbol = "ETHUSDT"
        """,
    )
    result = scan(tmp_path)
    assert sorted(s.id for s in result.strategies) == ["base_lib", "user"]


def test_several_classes_get_stem_colon_class_ids(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pair.py",
        """
        from botd import Strategy

        class Fast(Strategy):
            symbol = "BTCUSDT"

        class Slow(Strategy):
            symbol = "BTCUSDT"
        """,
    )
    assert [s.id for s in scan(tmp_path).strategies] == ["pair:Fast", "pair:Slow"]


def test_same_class_name_in_two_files_does_not_clash(tmp_path: Path) -> None:
    write(tmp_path, "one.py", GOOD)
    write(tmp_path, "two.py", GOOD)
    result = scan(tmp_path)
    one, two = result.strategies
    assert one.cls is not two.cls
    assert one.cls.__module__ != two.cls.__module__


def test_file_without_strategy_and_without_symbol(tmp_path: Path) -> None:
    write(tmp_path, "empty.py", "x = 1\n")
    write(tmp_path, "nosym.py", "from botd import Strategy\n\nclass N(Strategy):\n    pass\n")
    messages = sorted(e.message for e in scan(tmp_path).errors)
    assert "N: declares no symbol" in messages[0]
    assert "no Strategy subclass" in messages[1]


def test_private_files_are_skipped_and_missing_folder_reported(tmp_path: Path) -> None:
    write(tmp_path, "_helpers.py", "raise RuntimeError('never imported')\n")
    assert scan(tmp_path).errors == []
    result = scan(tmp_path / "nope")
    assert "does not exist" in result.errors[0].message

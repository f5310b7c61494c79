import re
from decimal import Decimal
from pathlib import Path
from textwrap import dedent

import pytest

from botd.strategy.api import Strategy
from botd.strategy.rules import RulesError, load_rules_file
from tests.unit.strategy.rules.rules_fakes import FakeHost, start

EXAMPLE = Path(__file__).resolve().parents[4] / "strategies" / "dip_buyer.rules.toml"

HEAD = 'api_version = 1\nsymbol = "BTCUSDT"\n'


def write(tmp_path: Path, text: str, name: str = "my_rules.rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> type[Strategy]:
    return load_rules_file(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> RulesError:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_rules_file(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:{info.value.line}:{info.value.column}: ")
    return info.value


def test_example_file_loads() -> None:
    cls = load_rules_file(EXAMPLE)
    assert issubclass(cls, Strategy)
    assert cls.__name__ == "DipBuyer"
    assert cls.api_version == 1
    assert cls.venue == "paper"
    assert cls.declared_symbols() == ("BTCUSDT",)
    assert cls.timeframe == "5s"
    assert cls.__doc__ == "Buy dips when RSI is oversold, take profit 0.5% up."
    params = cls.params()
    assert params["size"].default == Decimal("0.001")
    assert params["oversold"].default == 35


def test_minimal_file_and_defaults(tmp_path: Path) -> None:
    cls = load(tmp_path, HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 1"\n')
    assert cls.__name__ == "MyRules"
    assert cls.venue == "paper"
    assert cls.timeframe == "1m"
    assert cls.params() == {}
    host = FakeHost()
    start(cls, host)
    assert [(r.name, r.once, r.cooldown) for r in host.rules] == [("rule 1", False, None)]


def test_rule_options_reach_when(tmp_path: Path) -> None:
    cls = load(tmp_path, "api_version = 1\n" + dedent('''
        symbols = ["BTCUSDT", "ETHUSDT"]
        [[rule]]
        name = "a"
        when = "close > 1"
        then = "close"
        once = true
        cooldown = "5m"
        [[rule]]
        when = "close < 1"
        then = "cancel all"
        cooldown = 90
        '''))  # fmt: skip
    host = FakeHost()
    start(cls, host)
    assert [(r.name, r.once, r.cooldown) for r in host.rules] == [
        ("a [BTCUSDT]", True, 300.0),
        ("rule 2 [BTCUSDT]", False, 90.0),
        ("a [ETHUSDT]", True, 300.0),
        ("rule 2 [ETHUSDT]", False, 90.0),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("dip_buyer.rules.toml", "DipBuyer"), ("2fast.rules.toml", "Rules2fast"),
     ("my-grid bot.rules.toml", "MyGridBot")],
)  # fmt: skip
def test_class_name_comes_from_the_file_name(tmp_path: Path, name: str, expected: str) -> None:
    path = write(tmp_path, HEAD + '[[rule]]\nwhen = "true"\nthen = "close"\n', name)
    assert load_rules_file(path).__name__ == expected


RULE = '[[rule]]\nwhen = "close > 1"\nthen = "buy 1"\n'

# (file text, line, column, message fragment)
ERRORS = [
    # expressions: the column is the column in the file
    (HEAD + '[[rule]]\nwhen = "close > smaa(20)"\nthen = "close"\n', 4, 17,
     "unknown function 'smaa' (did you mean 'sma'?)"),
    (HEAD + '[[rule]]\nname = "x"\n  when   =   "clsoe > 1"\nthen = "close"\n', 5, 15,
     "did you mean 'close'?"),
    (HEAD + "[[rule]]\nwhen = 'close > 1 > 2'\nthen = 'close'\n", 4, 19, "cannot be chained"),
    (HEAD + '[[rule]]\nwhen = """\nclose > 1 and\n  rsi(14) < [30]"""\nthen = "close"\n', 6, 13,
     "indexing"),
    (HEAD + '[[rule]]\nwhen = """close > 1 and\n  x < 3"""\nthen = "close"\n', 5, 3,
     "unknown name 'x'"),
    (HEAD + '[[rule]]\nwhen = "close > sma(close)"\nthen = "close"\n', 4, 21,
     "indicator arguments must be numbers"),
    (HEAD + '[[rule]]\nwhen = "close * 2"\nthen = "close"\n', 4, 15, "'when' must be a condition"),
    (HEAD + '[[rule]]\nwhen = "close.__class__"\nthen = "close"\n', 4, 14, "attribute access"),
    (HEAD + '[[rule]]\nwhen = "__import__(\'os\')"\nthen = "close"\n', 4, 9, "cannot start with"),
    (HEAD + '[[rule]]\nwhen = "close > 1\\u0000"\nthen = "close"\n', 4, 9, "U+0000"),  # escapes:
    (HEAD + '[[rule]]\nwhen = "close > \u0661"\nthen = "close"\n', 4, 17, "ARABIC-INDIC DIGIT ONE"),
    (HEAD + '[[rule]]\nwhen = "' + "(" * 100 + "1" + ")" * 100 + '"\nthen = "close"\n', 4, 73,
     "nested too deeply"),
    (HEAD + '[[rule]]\nwhen = "' + "1" * 3000 + '"\nthen = "close"\n', 4, 9, "too long"),
    (HEAD + '[[rule]]\nwhen = "close > 1e999"\nthen = "close"\n', 4, 17, "number too large"),
    # actions
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "purchase 1"\n', 5, 9, "unknown action"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "bye 1"\n', 5, 9, "did you mean 'buy'?"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy -1"\n', 5, 13, "must be positive"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 0"\n', 5, 13, "must be positive"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy"\n', 5, 12, "expected a quantity"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 1 at"\n', 5, 17, "incomplete"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 1 at close > 2"\n', 5, 24,
     "price after 'at' must be a number"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 1 at clsoe"\n', 5, 18,
     "did you mean 'close'?"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 1 usdt"\n', 5, 15, "asset in capitals"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy 1 USDT now"\n', 5, 20, "unexpected 'now'"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "buy size"\n', 5, 13,
     "use a number or a name from [params]"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "close now"\n', 5, 15, "unexpected 'now'"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = "cancel"\n', 5, 15, "expected 'all'"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\nthen = ""\n', 5, 9, "the action is empty"),
    # structure
    ('api_version = 1\nsymbol = "BTCUSDT"\nsymbl = "x"\n' + RULE, 3, 1,
     "unknown key 'symbl' at the top level (did you mean 'symbol'?)"),
    (HEAD + '[[rule]]\nwhen = "close > 1"\n  thn = "buy 1"\n', 5, 3,
     "unknown key 'thn' in rule 1 (did you mean 'then'?)"),
    (HEAD + RULE + '[[rule]]\nthen = "buy 1"\n', 6, 1, "rule 2 has no `when`"),
    (HEAD + RULE + RULE + '[[rule]]\nwhen = "true"\n', 9, 1, "rule 3 has no `then`"),
    ('symbol = "BTCUSDT"\n' + RULE, 1, 1, "set `api_version = 1`"),
    ('symbol = "BTCUSDT"\napi_version = 2\n' + RULE, 2, 1, "not 2"),
    ('api_version = 1\n' + RULE, 1, 1, "give exactly one of"),
    ('api_version = 1\nsymbol = "A"\nsymbols = ["B"]\n' + RULE, 3, 1, "give exactly one of"),
    ('api_version = 1\nsymbols = []\n' + RULE, 2, 1, "non-empty list"),
    ('api_version = 1\nsymbols = ["BTCUSDT", "BTCUSDT"]\n' + RULE, 2, 1, "listed twice"),
    ('api_version = 1\nsymbol = "BTC USDT"\n' + RULE, 2, 1, "not a symbol"),
    (HEAD + 'timeframe = "5x"\n' + RULE, 3, 1, "not a timeframe"),
    (HEAD + "timeframe = 5\n" + RULE, 3, 1, "timeframe must be a string"),
    (HEAD + "venue = 1\n" + RULE, 3, 1, "venue must be a string"),
    (HEAD, 1, 1, "no rules"),
    (HEAD + '[rule]\nwhen = "true"\nthen = "close"\n', 3, 1, "[[rule]] (two brackets)"),
    (HEAD + '[[rule]]\nname = "a"\nwhen = "true"\nthen = "close"\n'
     '[[rule]]\nname = "a"\nwhen = "true"\nthen = "close"\n', 8, 1, "two rules are named 'a'"),
    (HEAD + '[[rule]]\nwhen = "true"\nthen = "close"\nonce = "yes"\n', 6, 1, "once must be"),
    (HEAD + '[[rule]]\nwhen = "true"\nthen = "close"\ncooldown = "soon"\n', 6, 1, "not a duration"),
    (HEAD + '[[rule]]\nwhen = "true"\nthen = "close"\ncooldown = 0\n', 6, 1, "must be positive"),
    (HEAD + '[[rule]]\nwhen = 1\nthen = "close"\n', 4, 1, "when must be a string"),
    (HEAD + "[params]\nclose = 3\n" + RULE, 4, 1, "'close' is reserved"),
    (HEAD + "[params]\nbuy = 3\n" + RULE, 4, 1, "'buy' is reserved"),
    (HEAD + "[params]\nsma = 3\n" + RULE, 4, 1, "'sma' is reserved"),
    (HEAD + "[params]\nlog = 3\n" + RULE, 4, 1, "'log' is reserved"),
    (HEAD + "[params]\n x = true\n" + RULE, 4, 2, "must be a number"),
    (HEAD + '[params]\nx = "3"\n' + RULE, 4, 1, "must be a number"),
    (HEAD + "[params]\nx = nan\n" + RULE, 4, 1, "must be a number"),
    (HEAD + '[params]\n"_x" = 1\n' + RULE, 4, 1, "must be a letter"),
    (HEAD + "[params]\nn = 0\n" + '[[rule]]\nwhen = "sma(n) > 1"\nthen = "close"\n', 6, 13,
     "whole number of bars"),
    # TOML itself
    (HEAD + '[[rule]]\nwhen = "close > 1\nthen = "close"\n', 4, 18, "invalid TOML"),
    (HEAD + "[[rule]\n", 3, 7, "invalid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "column", "fragment"), ERRORS)
def test_errors_point_at_the_file_line_and_column(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    err = error(tmp_path, text)
    assert fragment in err.message, str(err)
    assert (err.line, err.column) == (line, column), str(err)


def test_error_str_format(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + '[[rule]]\nwhen = "close > smaa(20)"\nthen = "close"\n')
    path = tmp_path / "my_rules.rules.toml"
    assert str(err) == (
        f"{path}:4:17: unknown function 'smaa' (did you mean 'sma'?)"
    )  # fmt: skip


def test_unreadable_and_non_utf8_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules_file(tmp_path / "missing.rules.toml")
    bad = tmp_path / "bad.rules.toml"
    bad.write_bytes(HEAD.encode() + b"\n\xff\xfe = 1\n")
    with pytest.raises(RulesError, match="not valid UTF-8") as info:
        load_rules_file(bad)
    assert info.value.line == 4
    huge = tmp_path / "huge.rules.toml"
    huge.write_text(HEAD + "# " + "x" * 300_000 + "\n")
    with pytest.raises(RulesError, match="file too large"):
        load_rules_file(huge)


def test_null_bytes_in_the_file_are_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "nul.rules.toml"
    path.write_bytes(HEAD.encode() + b'[[rule]]\nwhen = "close\x00"\nthen = "close"\n')
    with pytest.raises(RulesError, match="invalid TOML"):
        load_rules_file(path)


def test_asset_is_checked_against_the_instrument_when_the_strategy_starts(
    tmp_path: Path,
) -> None:
    cls = load(tmp_path, HEAD + '[[rule]]\nwhen = "true"\nthen = "buy 100 EUR"\n')
    with pytest.raises(RulesError) as info:
        start(cls, FakeHost())
    assert (info.value.line, info.value.column) == (5, 17)
    assert "EUR is neither the base (BTC) nor the quote (USDT) asset of BTCUSDT" in str(info.value)


def test_bad_param_override_is_reported_in_the_file_at_start(tmp_path: Path) -> None:
    cls = load(
        tmp_path, HEAD + '[params]\nn = 20\n[[rule]]\nwhen = "close > sma(n)"\nthen = "close"\n'
    )
    with pytest.raises(RulesError) as info:
        start(cls, FakeHost(), params={"n": 0})
    assert (info.value.line, info.value.column) == (6, 21)
    assert "whole number of bars" in info.value.message


def test_no_forbidden_machinery_in_the_rules_package() -> None:
    source = Path(__file__).resolve().parents[4] / "botd" / "strategy" / "rules"
    for path in source.glob("*.py"):
        text = path.read_text()
        calls = re.findall(r"(?<![\w.])(?:eval|exec|compile|__import__)\(", text)
        assert calls == [], f"{path.name} calls {calls}"
        for word in ("literal_eval", "import ast", "from ast"):
            assert word not in text, f"{path.name} uses {word}"

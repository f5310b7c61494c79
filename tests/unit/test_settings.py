from __future__ import annotations

import tomllib
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import botd.settings as settings_module
from botd.errors import ConfigError
from botd.settings import (
    Settings,
    SettingsError,
    VenueSettings,
    load_settings,
    render_settings,
)

CANARY = "CANARY-7f3e9a1c-SECRET"
CANARY2 = "CANARY-2b8d4e6f-SECRET"
REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(
    tmp_path: Path,
    toml: str | None = None,
    env: dict[str, str] | None = None,
    cli: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
) -> Settings:
    """Load with everything isolated under tmp_path (never the real /run/secrets)."""
    sdir = tmp_path / "secrets"
    sdir.mkdir(exist_ok=True)
    for name, content in (secrets or {}).items():
        write(sdir / name, content)
    if toml is not None:
        write(tmp_path / "botd.toml", toml)
    return load_settings(None, cli or {}, env or {}, secrets_dirs=[sdir], cwd=tmp_path)


def load_error(tmp_path: Path, **kw: Any) -> str:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, **kw)
    assert isinstance(info.value, ConfigError)
    return str(info.value)


def test_defaults_without_any_source(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert s.log.level == "info"
    assert s.log.format == "auto"
    assert s.daemon.data_dir == Path("data")
    assert s.daemon.shutdown_timeout == 10.0
    assert s.paper.symbols == ["BTCUSDT", "ETHUSDT"]
    assert s.paper.balances == {"USDT": Decimal(100000), "BTC": Decimal(1), "ETH": Decimal(10)}
    assert s.paper.maker_fee == Decimal("0.001")
    assert s.venues == {}
    assert s.strategies == {}
    assert s.source_of("log.level") == "default"


def test_settings_constructor_ignores_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTD_LOG__LEVEL", "debug")
    assert Settings().log.level == "info"


def test_precedence_across_all_layers(tmp_path: Path) -> None:
    toml = """
[log]
level = "warning"
format = "console"
[daemon]
data_dir = "/from/file"
strategies_dir = "/strategies/file"
heartbeat_interval = 3.0
shutdown_timeout = 20
[paper]
seed = 1
[paper.balances]
USDT = 5
"""
    cred = tmp_path / "cred"
    write(cred / "paper__seed", "2\n")
    write(cred / "daemon__heartbeat_interval", "4\n")
    write(cred / "daemon__shutdown_timeout", "30\n")
    run_secrets = tmp_path / "run_secrets"
    write(run_secrets / "daemon__shutdown_timeout", "40\n")  # CREDENTIALS_DIRECTORY wins
    write(run_secrets / "botd_log__format", "json\n")
    write(tmp_path / "botd.toml", toml)
    env = {
        "CREDENTIALS_DIRECTORY": str(cred),
        "BOTD_PAPER__SEED": "3",
        "BOTD_LOG__LEVEL": "error",
        "BOTD_DAEMON__STRATEGIES_DIR": "/strategies/env",
        "BOTD_PAPER__BALANCES__btc": "2.5",
        "UNRELATED": "x",
    }
    cli = {"log": {"level": "debug"}, "daemon": {"data_dir": "/from/cli", "strategies_dir": None}}
    s = load_settings(
        None, cli, env, secrets_dirs=[cred, run_secrets, tmp_path / "absent"], cwd=tmp_path
    )
    assert s.log.level == "debug"  # cli > env > file
    assert s.source_of("log.level") == "command line --log-level"
    assert s.daemon.data_dir == Path("/from/cli")
    assert s.source_of("daemon.data_dir") == "command line --data-dir"
    assert s.daemon.strategies_dir == Path("/strategies/env")  # cli None = not given
    assert s.source_of("daemon.strategies_dir") == "environment BOTD_DAEMON__STRATEGIES_DIR"
    assert s.paper.seed == 3  # env > secret file > file
    assert s.daemon.heartbeat_interval == 4.0  # secret file > file
    assert s.source_of("daemon.heartbeat_interval") == (
        f"secret file {cred / 'daemon__heartbeat_interval'}"
    )
    assert s.daemon.shutdown_timeout == 30.0
    assert s.log.format == "json"
    assert s.paper.balances == {"USDT": Decimal(5), "BTC": Decimal("2.5")}  # deep merge
    assert s.source_of("paper.balances.USDT") == f"file {tmp_path / 'botd.toml'}"
    assert s.source_of("paper.symbols") == "default"


def test_default_secrets_dirs_use_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_secrets = tmp_path / "run_secrets"
    write(run_secrets / "venues__binance__api_key", "loses to CREDENTIALS_DIRECTORY")
    write(run_secrets / "venues__binance__base_url", "http://127.0.0.1:9")
    monkeypatch.setattr(settings_module, "DOCKER_SECRETS_DIR", run_secrets)
    cred = tmp_path / "creds"
    write(cred / "venues__binance__api_key", CANARY + "\n")
    write(cred / "venues__binance__kind", "binance")
    env = {"CREDENTIALS_DIRECTORY": str(cred)}
    s = load_settings(None, {}, env, cwd=tmp_path)
    venue = s.venues["binance"]
    assert venue.api_key is not None
    assert venue.api_key.get_secret_value() == CANARY  # one trailing newline stripped
    assert venue.base_url == "http://127.0.0.1:9"


def test_secret_file_content_keeps_all_but_one_trailing_newline(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        toml='[venues.x]\nkind = "binance"\n',
        secrets={"venues__x__api_secret": "ab cd\n\n", "venues__x__passphrase": "p\r\n"},
    )
    assert s.venues["x"].api_secret is not None
    assert s.venues["x"].api_secret.get_secret_value() == "ab cd\n"
    assert s.venues["x"].passphrase is not None
    assert s.venues["x"].passphrase.get_secret_value() == "p"


def test_foreign_secret_files_are_ignored_and_not_read(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        secrets={"db_password": "x", "postgres__user": "y", "BOTD.txt": "z"},
    )
    assert s.model_dump() == Settings().model_dump()


def test_bad_nested_secret_file_name_is_an_error(tmp_path: Path) -> None:
    msg = load_error(
        tmp_path,
        toml='[venues.binance]\nkind = "binance"\n',
        secrets={"venues__binance__api_sekret": CANARY},
    )
    assert "venues.binance.api_sekret" in msg
    assert "secret file" in msg
    assert "api_secret" in msg  # the suggestion
    assert CANARY not in msg


def test_botd_prefixed_secret_file_must_map(tmp_path: Path) -> None:
    msg = load_error(tmp_path, secrets={"botd_whatever": CANARY})
    assert "whatever" in msg
    assert CANARY not in msg


def test_nested_env_and_json_values(tmp_path: Path) -> None:
    env = {
        "BOTD_LOG__LEVEL": "DEBUG",
        "BOTD_PAPER__SYMBOLS": '["SOLUSDT"]',
        "BOTD_PAPER__MAKER_FEE": "0.0002",
        "BOTD_VENUES__BINANCE__KIND": "binance",
        "BOTD_VENUES__BINANCE__TESTNET": "false",
        "BOTD_VENUES__BINANCE__API_KEY": CANARY,
        "BOTD_STRATEGIES__SMA_CROSS__FAST": "5",
        "BOTD_STRATEGIES__SMA_CROSS__NAME": "abc",
        "botd_daemon__cancel_orders_on_shutdown": "no",
    }
    s = load(tmp_path, env=env)
    assert s.log.level == "debug"
    assert s.paper.symbols == ["SOLUSDT"]
    assert s.paper.maker_fee == Decimal("0.0002")
    assert s.venues["binance"].testnet is False
    assert s.strategies == {"sma_cross": {"fast": 5, "name": "abc"}}
    assert s.daemon.cancel_orders_on_shutdown is False


def test_env_venue_names_merge_with_file_venues(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        toml='[venues.binance]\nkind = "binance"\n',
        env={"BOTD_VENUES__BINANCE__API_SECRET": CANARY},
    )
    assert list(s.venues) == ["binance"]
    assert s.venues["binance"].kind == "binance"
    assert s.source_of("venues.binance.api_secret") == (
        "environment BOTD_VENUES__BINANCE__API_SECRET"
    )


def test_unknown_key_in_file_is_an_error_naming_it(tmp_path: Path) -> None:
    msg = load_error(tmp_path, toml='[log]\nlevl = "debug"\n[deamon]\ndata_dir = "x"\n')
    lines = msg.splitlines()
    assert len(lines) == 2
    assert any(
        line.startswith("log.levl: 'debug' from file ") and "did you mean 'level'" in line
        for line in lines
    )
    assert any(line.startswith("deamon: ") and "did you mean 'daemon'" in line for line in lines)


def test_unknown_botd_env_var_is_an_error(tmp_path: Path) -> None:
    msg = load_error(tmp_path, env={"BOTD_LOG__LEVL": "debug", "BOTD_NOPE": "1"})
    assert "log.levl: 'debug' from environment BOTD_LOG__LEVL" in msg
    assert "did you mean 'level'" in msg
    assert "environment BOTD_NOPE" in msg


def test_bad_value_names_field_source_and_expectation(tmp_path: Path) -> None:
    msg = load_error(tmp_path, env={"BOTD_LOG__LEVEL": "loud"})
    assert msg == (
        "log.level: 'loud' from environment BOTD_LOG__LEVEL: "
        "Input should be 'debug', 'info', 'warning' or 'error'"
    )


def test_every_problem_reported_once_per_line(tmp_path: Path) -> None:
    msg = load_error(
        tmp_path,
        toml="[daemon]\nshutdown_timeout = 500\n",
        env={"BOTD_PAPER__SEED": "x", "BOTD_PAPER__SYMBOLS": "[oops"},
        cli={"daemon": {"data_dir": 5}},
    )
    lines = msg.splitlines()
    assert len(lines) == 4, lines
    by_path = {line.split(":", 1)[0]: line for line in lines}
    assert "from file" in by_path["daemon.shutdown_timeout"]
    assert "less than or equal to 120" in by_path["daemon.shutdown_timeout"]
    assert "from environment BOTD_PAPER__SEED" in by_path["paper.seed"]
    assert "JSON" in by_path["paper.symbols"]
    assert "from command line --data-dir" in by_path["daemon.data_dir"]


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('[paper]\nsymbols = ["btcusdt"]\n', "upper-case"),
        ('[paper]\nsymbols = ["BTCUSDT", "BTCUSDT"]\n', "duplicate"),
        ("[paper]\nmaker_fee = 0.5\n", "less than 0.1"),
        ("[paper]\ntaker_fee = -0.001\n", "greater than or equal to 0"),
        ("[paper.balances]\nUSDT = -1\n", "greater than or equal to 0"),
        ("[paper.balances]\nusdt = 1\n", "asset codes"),
        ("[paper]\nevent_rate = 0\n", "greater than 0"),
        ("[daemon]\nheartbeat_interval = 61\n", "less than or equal to 60"),
        ('[venues.Binance]\nkind = "binance"\n', "lower-case"),
        ('[venues.binance]\nkind = ""\n', "Input should be 'binance'"),
    ],
)
def test_value_constraints(tmp_path: Path, toml: str, fragment: str) -> None:
    assert fragment in load_error(tmp_path, toml=toml)


def test_missing_required_venue_field_names_the_section_source(tmp_path: Path) -> None:
    msg = load_error(tmp_path, env={"BOTD_VENUES__KRAKEN__API_KEY": CANARY})
    assert msg.startswith("venues.kraken.kind: ")
    assert "environment BOTD_VENUES__KRAKEN__API_KEY" in msg
    assert "Field required" in msg
    assert CANARY not in msg


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    msg = load_error(tmp_path, toml='[log]\nlevel = "info"\nformat = \n')
    assert str(tmp_path / "botd.toml") in msg
    assert "line 3" in msg
    assert "column" in msg


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Path("nope.toml"), {}, {}, secrets_dirs=[], cwd=tmp_path)
    assert str(tmp_path / "nope.toml") in str(info.value)
    assert "not found" in str(info.value)


def test_explicit_config_path_is_used(tmp_path: Path) -> None:
    cfg = write(tmp_path / "etc" / "conf.toml", '[log]\nlevel = "error"\n')
    write(tmp_path / "botd.toml", '[log]\nlevel = "debug"\n')
    s = load_settings(cfg, {}, {}, secrets_dirs=[], cwd=tmp_path)
    assert s.log.level == "error"


def _unlistable(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    # Permissions cannot be relied on (tests may run as root), so make listing fail directly.
    real_iterdir = Path.iterdir

    def iterdir(self: Path) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_unreadable_secrets_dir_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    _unlistable(monkeypatch, locked)
    with pytest.raises(SettingsError, match=f"secrets directory {locked}: cannot list"):
        load_settings(None, {}, {}, secrets_dirs=[locked], cwd=tmp_path)
    with pytest.raises(SettingsError, match="cannot list"):
        load_settings(None, {}, {"CREDENTIALS_DIRECTORY": str(locked)}, cwd=tmp_path)


def test_unreadable_default_docker_secrets_dir_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "run_secrets"
    locked.mkdir()
    _unlistable(monkeypatch, locked)
    monkeypatch.setattr(settings_module, "DOCKER_SECRETS_DIR", locked)
    assert load_settings(None, {}, {}, cwd=tmp_path).log.level == "info"


# ------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize(
    "source",
    ["toml", "env", "secret_file", "cli"],
)
def test_secret_never_in_errors(tmp_path: Path, source: str) -> None:
    toml = '[log]\nlevel = "loud"\n[venues.binance]\nkind = "binance"\n'
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    cli: dict[str, Any] = {}
    if source == "toml":
        # A secret with a wrong type, a secret under a mistyped key, a secret at top level.
        toml += f'api_sekret = "{CANARY}"\n[venues.kraken]\napi_key = "{CANARY2}"\n'
        toml += f'[mystery]\nsecret = "{CANARY}"\n'
    elif source == "env":
        env = {
            "BOTD_VENUES__BINANCE__API_SEKRET": CANARY,
            "BOTD_VENUES__KRAKEN__API_KEY": CANARY2,
            "BOTD_VENUES__BYBIT": f'{{"api_key": "{CANARY}", "kind": 1}}',
        }
    elif source == "secret_file":
        secrets = {
            "venues__binance__api_sekret": CANARY,
            "venues__kraken__api_key": CANARY2,
        }
    else:
        cli = {"venues": {"binance": {"api_key": 12, "api_sekret": CANARY}}}
    msg = load_error(tmp_path, toml=toml, env=env, secrets=secrets, cli=cli)
    assert CANARY not in msg
    assert CANARY2 not in msg
    assert "log.level: 'loud'" in msg  # non-secret values are still shown
    assert "'<hidden>'" in msg or source == "secret_file"


def test_secret_with_wrong_type_is_masked(tmp_path: Path) -> None:
    msg = load_error(tmp_path, toml='[venues.binance]\nkind = "binance"\napi_key = 1234567\n')
    assert msg.startswith("venues.binance.api_key: '<hidden>' from file ")
    assert "1234567" not in msg


def test_secret_not_in_repr_str_dump_or_render(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        toml=f'[venues.binance]\nkind = "binance"\napi_key = "{CANARY}"\n'
        '[strategies.x]\nwebhook_token = "tok-123456"\n',
        env={"BOTD_VENUES__BINANCE__API_SECRET": CANARY2},
    )
    for text in (
        repr(s),
        str(s),
        s.model_dump_json(),
        str(s.model_dump()),
        repr(s.venues["binance"]),
        render_settings(s),
    ):
        assert CANARY not in text
        assert CANARY2 not in text
    rendered = render_settings(s)
    assert "tok-123456" not in rendered  # masked by key name inside strategy params
    assert 'api_key = "**********"' in rendered


def test_secret_values_walks_the_whole_tree(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        toml='[venues.a]\nkind = "binance"\napi_key = "AAAA-key"\napi_secret = ""\n'
        '[venues.b]\nkind = "binance"\npassphrase = "BBBB-pass"\n',
        secrets={"venues__b__api_secret": CANARY},
    )
    assert sorted(s.secret_values()) == sorted(["AAAA-key", "BBBB-pass", CANARY])
    assert Settings().secret_values() == []


def test_render_settings_is_valid_toml_that_loads_back(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        toml='[venues.binance]\nkind = "binance"\nbase_url = "http://127.0.0.1:1"\n'
        '[strategies.sma_cross]\nfast = 5\nlevels = [1.5, 2]\nopts = { a = "b" }\n',
        env={"BOTD_LOG__LEVEL": "warning"},
    )
    text = render_settings(s)
    assert "# from environment BOTD_LOG__LEVEL" in text
    data = tomllib.loads(text)
    assert data["log"]["level"] == "warning"
    assert data["paper"]["balances"]["USDT"] == 100000
    assert data["strategies"]["sma_cross"] == {"fast": 5, "levels": [1.5, 2], "opts": {"a": "b"}}
    other = tmp_path / "again"
    other.mkdir()
    again = load(other, toml=text)
    assert again.model_dump() == s.model_dump()


def test_render_settings_shows_every_section_and_masks_nested_secrets(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        toml='[risk]\nmax_open_orders = 7\n[notify.telegram]\nchat_id = "42"\n',
        env={"BOTD_NOTIFY__TELEGRAM__BOT_TOKEN": CANARY},
    )
    text = render_settings(s)
    assert CANARY not in text
    data = tomllib.loads(text)
    sections = [name for name in Settings.model_fields if name not in ("venues", "strategies")]
    assert sorted(data) == sorted(sections)  # every section is shown, nothing invented
    assert data["risk"]["max_open_orders"] == 7
    assert data["notify"]["telegram"]["bot_token"] == "**********"
    assert "# from environment BOTD_NOTIFY__TELEGRAM__BOT_TOKEN" in text


# ---------------------------------------------------------------------- example config


def _schema_paths(model: type[BaseModel], prefix: str = "") -> list[tuple[str, bool]]:
    """(dotted path, is a table) for every field, "<name>" standing for dict keys."""
    out: list[tuple[str, bool]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        is_model = isinstance(ann, type) and issubclass(ann, BaseModel)
        out.append((path, is_model or typing.get_origin(ann) is dict))
        if is_model:
            assert isinstance(ann, type)
            out += _schema_paths(ann, path + ".")
        for a in typing.get_args(ann):
            if isinstance(a, type) and issubclass(a, BaseModel):
                out += _schema_paths(a, path + ".<name>.")
    return out


def test_example_config_loads_and_documents_every_field(tmp_path: Path) -> None:
    example = REPO / "deploy" / "botd.example.toml"
    s = load_settings(example, {}, {}, secrets_dirs=[], cwd=tmp_path)
    assert s.model_dump() == Settings().model_dump()  # the example shows the defaults
    text = example.read_text(encoding="utf-8")
    paths = _schema_paths(Settings)
    assert ("venues.<name>.api_key", False) in paths
    lines = [line.lstrip("# ") for line in text.splitlines()]
    for path, is_table in paths:
        if is_table:
            assert any(line.startswith(f"[{path}") for line in lines), path
        else:
            leaf = path.rsplit(".", 1)[-1]
            assert any(line.startswith(f"{leaf} = ") for line in lines), path
    for field in VenueSettings.model_fields:
        assert f"# {field} = " in text


def test_settings_error_is_a_config_error() -> None:
    err = SettingsError(["a: b", "c: d"])
    assert isinstance(err, ConfigError)
    assert str(err) == "a: b\nc: d"
    assert err.problems == ("a: b", "c: d")

"""[notify] and [health] settings: secrets from files and env, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from botd.settings import Settings, SettingsError, daily_cron, load_settings

TOKEN = "987654:CANARY-settings-token-3c1d"
HOOK_URL = "https://hooks.example.com/services/CANARY-url-token-77aa"


def load(
    tmp_path: Path, toml: str = "", env: dict[str, str] | None = None, secrets: bool = False
) -> Settings:
    cfg = tmp_path / "botd.toml"
    cfg.write_text(toml)
    dirs: list[Path] = []
    if secrets:
        d = tmp_path / "creds"
        d.mkdir()
        (d / "notify__telegram__bot_token").write_text(TOKEN + "\n")
        (d / "notify__webhook__url").write_text(HOOK_URL + "\n")
        dirs.append(d)
    return load_settings(cfg, {}, env or {}, secrets_dirs=dirs, cwd=tmp_path)


def test_tokens_come_from_secret_files_and_are_registered_for_redaction(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        '[notify.telegram]\nchat_id = -1001\n[notify]\ndaily_summary = "7:05"\n',
        secrets=True,
    )
    assert s.notify.telegram.bot_token is not None
    assert s.notify.telegram.bot_token.get_secret_value() == TOKEN
    assert s.notify.telegram.chat_id == "-1001"
    assert s.notify.webhook.url is not None
    assert s.notify.webhook.url.get_secret_value() == HOOK_URL
    assert TOKEN in s.secret_values() and HOOK_URL in s.secret_values()
    assert TOKEN not in repr(s) and HOOK_URL not in repr(s)
    assert daily_cron(s.notify.daily_summary) == "5 7 * * *"


def test_env_sets_nested_notify_fields(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        env={
            "BOTD_NOTIFY__WEBHOOK__URL": HOOK_URL,
            "BOTD_NOTIFY__EVENTS": '["fills", "kill_switch"]',
            "BOTD_HEALTH__VENUE_GRACE": "5",
        },
    )
    assert s.notify.events == ["fills", "kill_switch"]
    assert s.health.venue_grace == 5.0


@pytest.mark.parametrize(
    ("toml", "env", "field"),
    [
        ("[notify.telegram]\n", {"BOTD_NOTIFY__TELEGRAM__BOT_TOKEN": TOKEN}, "notify.telegram"),
        (
            "[notify.webhook]\n",
            {"BOTD_NOTIFY__WEBHOOK__URL": "ftp://x/" + TOKEN},
            "notify.webhook.url",
        ),
        ('[notify]\ndaily_summary = "25:00"\n', {}, "notify.daily_summary"),
        ('[notify]\ndaily_summary = "0 99 * * *"\n', {}, "notify.daily_summary"),
        ('[notify]\ntimezone = "Mars/Olympus"\n', {}, "notify.timezone"),
        ('[notify]\nevents = ["fils"]\n', {}, "notify.events"),
        ("[health]\nmax_loop_lag_ms = 0\n", {}, "health.max_loop_lag_ms"),
    ],
)
def test_bad_notify_settings_name_the_field(
    tmp_path: Path, toml: str, env: dict[str, str], field: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load(tmp_path, toml, env)
    assert str(err.value).startswith(field)
    assert TOKEN not in str(err.value)


def test_cron_daily_summary_is_accepted(tmp_path: Path) -> None:
    s = load(tmp_path, '[notify]\ndaily_summary = "30 17 * * 1-5"\ntimezone = "America/New_York"\n')
    assert daily_cron(s.notify.daily_summary) == "30 17 * * 1-5"

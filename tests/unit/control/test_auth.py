"""The control API's token (file, mode, constant-time check) and its settings."""

from __future__ import annotations

import hmac
import stat
from pathlib import Path

import pytest

from botd.control.auth import TOKEN_FILE, bearer_matches, load_or_create_token, read_token_file
from botd.settings import SettingsError, load_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    token, created = load_or_create_token(tmp_path)
    assert created
    assert len(token) >= 40
    assert _mode(tmp_path / TOKEN_FILE) == 0o600
    again, created_again = load_or_create_token(tmp_path)
    assert (again, created_again) == (token, False)
    assert read_token_file(tmp_path) == token
    assert list(tmp_path.iterdir()) == [tmp_path / TOKEN_FILE], "no temporary file left"


def test_tokens_differ_between_data_dirs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_or_create_token(tmp_path / "a")[0] != load_or_create_token(tmp_path / "b")[0]


def test_a_token_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE
    path.write_text("an-operator-chosen-token-value\n")
    path.chmod(0o644)
    token, created = load_or_create_token(tmp_path)
    assert (token, created) == ("an-operator-chosen-token-value", False)
    assert _mode(path) == 0o600


def test_no_token_file_reads_as_none(tmp_path: Path) -> None:
    assert read_token_file(tmp_path) is None


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer right-token", True),
        ("bearer right-token", True),
        ("Bearer  right-token ", True),
        ("Bearer wrong-token", False),
        ("Bearer right-toke", False),
        ("Bearer right-token2", False),
        ("Basic right-token", False),
        ("right-token", False),
        ("Bearer ", False),
        ("", False),
        (None, False),
        ("Bearer ríght-token", False),
    ],
)
def test_bearer_matches(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, "right-token") is ok


def test_the_comparison_is_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert not bearer_matches("Bearer guess", "the-token")
    assert bearer_matches("Bearer the-token", "the-token")
    assert seen == [(b"guess", b"the-token"), (b"the-token", b"the-token")]


def _load(env: dict[str, str], tmp_path: Path) -> object:
    return load_settings(None, {}, env, secrets_dirs=[], cwd=tmp_path)


def test_settings_default_to_loopback(tmp_path: Path) -> None:
    settings = load_settings(None, {}, {}, secrets_dirs=[], cwd=tmp_path)
    assert settings.control.enabled
    assert settings.control.host == "127.0.0.1"
    assert settings.control.token is None
    assert not settings.control.metrics_public


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "botd.example"])
def test_non_loopback_without_a_token_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(SettingsError) as err:
        _load({"BOTD_CONTROL__HOST": host}, tmp_path)
    assert "control" in str(err.value)
    assert "not a loopback address" in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_needs_no_token(tmp_path: Path, host: str) -> None:
    _load({"BOTD_CONTROL__HOST": host}, tmp_path)


def test_non_loopback_with_a_token_or_disabled_is_allowed(tmp_path: Path) -> None:
    token = "s3cret-token-of-enough-length"
    settings = load_settings(
        None,
        {},
        {"BOTD_CONTROL__HOST": "0.0.0.0", "BOTD_CONTROL__TOKEN": token},
        secrets_dirs=[],
        cwd=tmp_path,
    )
    assert token in settings.secret_values(), "redacted from logs like every secret"
    assert token not in repr(settings)
    _load({"BOTD_CONTROL__HOST": "0.0.0.0", "BOTD_CONTROL__ENABLED": "false"}, tmp_path)


def test_token_from_a_secret_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "control__token").write_text("from-a-credential-file-123\n")
    settings = load_settings(None, {}, {}, secrets_dirs=[secrets], cwd=tmp_path)
    assert settings.control.token is not None
    assert settings.control.token.get_secret_value() == "from-a-credential-file-123"


def test_short_token_and_half_tls_are_refused_without_echoing_the_token(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        _load({"BOTD_CONTROL__TOKEN": "short-secret"}, tmp_path)
    assert "at least 16" in str(err.value)
    assert "short-secret" not in str(err.value)
    with pytest.raises(SettingsError) as err:
        _load({"BOTD_CONTROL__TLS_CERT": "/etc/botd/cert.pem"}, tmp_path)
    assert "tls_cert and tls_key" in str(err.value)


def test_port_range(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"control\.port"):
        _load({"BOTD_CONTROL__PORT": "70000"}, tmp_path)

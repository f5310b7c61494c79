"""Configuration: defaults < TOML file < secret files < ``BOTD_*`` environment < command line.

Every layer is turned into plain nested dicts, deep-merged while remembering which source gave
each value, and validated once. Unknown keys are errors in every layer (a typo must not fall
back to a default silently), except secret files whose name is not ours: ``/run/secrets`` and
``$CREDENTIALS_DIRECTORY`` are shared with other services.

Why not pydantic-settings' own ``EnvSettingsSource`` / ``secrets_dir``: the env source silently
drops names it cannot map (so ``BOTD_LOG__LEVL`` would be ignored), lower-cases dict keys
(``BOTD_PAPER__BALANCES__USDT`` would become ``usdt``), reads ``os.environ`` rather than the
mapping we are given, and cannot say which variable a value came from; ``secrets_dir`` does not
reach nested models (pydantic-settings issue #154). The name-to-field mapping here follows the
same conventions (``BOTD_`` prefix, ``__`` nesting, case-insensitive names, JSON for list/table
values) so the documentation of pydantic-settings still describes what users see.
:class:`Settings` is a ``BaseSettings`` whose only source is its init arguments, so building one
never reads the process environment behind the caller's back.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError
from pydantic import field_validator as _field_validator
from pydantic import model_validator as _model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from botd.durations import parse_duration
from botd.errors import ConfigError
from botd.logs import MASK, Redactor, is_sensitive_key
from botd.schedule import ScheduleError, standard_cron

__all__ = [
    "ControlSettings",
    "DaemonSettings",
    "LogSettings",
    "PaperSettings",
    "Settings",
    "SettingsError",
    "VenueSettings",
    "load_settings",
    "render_settings",
]

ENV_PREFIX = "BOTD_"
NESTED_DELIMITER = "__"
DEFAULT_CONFIG_NAME = "botd.toml"
DEFAULT_SOURCE = "default"
HIDDEN = "'<hidden>'"
# Secrets are a few hundred bytes; anything bigger in a secrets dir under one of our names is a
# mistake (wrong file mounted), and reading it whole would be a memory hazard.
MAX_SECRET_FILE_BYTES = 1 << 20
DOCKER_SECRETS_DIR = Path("/run/secrets")

_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+(?:[._/-][A-Z0-9]+)*$")
_ASSET_RE = re.compile(r"^[A-Z0-9]+$")
_VENUE_NAME_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
# A flag name differs from the field name only where the CLI chose a shorter spelling.
_CLI_FLAG_OVERRIDES: Mapping[tuple[str, ...], str] = types.MappingProxyType(
    {("daemon", "strategies_dir"): "--strategies", ("log", "level"): "--log-level"}
)

Fee = Annotated[Decimal, Field(ge=0, lt=Decimal("0.1"), allow_inf_nan=False)]
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


# --------------------------------------------------------------------------------------- schema


class LogSettings(BaseModel):
    model_config = _MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @_field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # LOG_LEVEL=DEBUG is how most people spell it.
        return value.lower() if isinstance(value, str) else value


class DaemonSettings(BaseModel):
    model_config = _MODEL_CONFIG

    data_dir: Path = Path("data")
    strategies_dir: Path = Path("strategies")
    cancel_orders_on_shutdown: bool = True
    shutdown_timeout: float = Field(default=10.0, gt=0, le=120)
    heartbeat_interval: float = Field(default=2.0, gt=0, le=60)


class PaperSettings(BaseModel):
    model_config = _MODEL_CONFIG

    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    seed: int = 7
    event_rate: float = Field(default=20.0, gt=0, le=100_000)
    maker_fee: Fee = Decimal("0.001")
    taker_fee: Fee = Decimal("0.001")
    balances: dict[str, Amount] = Field(
        default_factory=lambda: {
            "USDT": Decimal("100000"),
            "BTC": Decimal("1"),
            "ETH": Decimal("10"),
        }
    )

    @_field_validator("symbols")
    @classmethod
    def _check_symbols(cls, symbols: list[str]) -> list[str]:
        if not symbols:
            raise ValueError("at least one symbol is required")
        bad = [s for s in symbols if not _SYMBOL_RE.match(s)]
        if bad:
            raise ValueError(
                f"symbols must be upper-case letters and digits (e.g. 'BTCUSDT'), got {bad!r}"
            )
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate symbols {dupes!r}")
        return symbols

    @_field_validator("balances")
    @classmethod
    def _check_assets(cls, balances: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [a for a in balances if not _ASSET_RE.match(a)]
        if bad:
            raise ValueError(f"asset codes must be upper-case letters and digits, got {bad!r}")
        return balances


class RuntimeSettings(BaseModel):
    """How strategies are run and contained."""

    model_config = _MODEL_CONFIG

    hot_reload: bool = True
    cancel_orders_on_removal: bool = True
    max_errors: int = Field(default=5, ge=1, le=10_000)
    error_window: float = Field(default=60.0, gt=0, le=86_400)
    hook_budget_ms: float = Field(default=5.0, gt=0, le=60_000)
    max_overruns: int = Field(default=10, ge=1, le=10_000)
    loop_lag_warn_ms: float = Field(default=100.0, gt=0, le=60_000)


PositiveAmount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class RiskLimitSettings(BaseModel):
    """Pre-trade limits; every one is optional (unset = no limit)."""

    model_config = _MODEL_CONFIG

    max_order_notional: PositiveAmount | None = None
    max_position: PositiveAmount | None = None
    max_open_orders: int | None = Field(default=None, ge=1)
    max_orders_per_minute: int | None = Field(default=None, ge=1)
    max_daily_loss: PositiveAmount | None = None


class RiskSettings(RiskLimitSettings):
    """Global limits, the fat-finger guard, and limits per strategy id."""

    price_band: Decimal | None = Field(default=Decimal("0.05"), gt=0, lt=1, allow_inf_nan=False)
    max_quote_age: float | None = Field(default=30.0, gt=0)
    per_strategy: dict[str, RiskLimitSettings] = Field(default_factory=dict)


class GatewaySettings(BaseModel):
    model_config = _MODEL_CONFIG

    submit_timeout: float = Field(default=10.0, gt=0, le=120)
    order_deadline: float = Field(default=5.0, gt=0, le=3600)
    reconcile_interval: float = Field(default=60.0, gt=0, le=86_400)
    persist_paper_account: bool = True


class ControlSettings(BaseModel):
    """The control API (botd/control): HTTP on loopback with a bearer token."""

    model_config = _MODEL_CONFIG

    enabled: bool = True
    host: str = "127.0.0.1"
    # 0 picks a free port; the bound address is written to <data_dir>/control.json.
    port: int = Field(default=8766, ge=0, le=65535)
    socket: Path | None = None  # a Unix socket path instead of host and port
    token: SecretStr | None = None  # unset: generated into <data_dir>/control.token
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_public: bool = False  # serve /metrics without the token

    @_model_validator(mode="after")
    def _check(self) -> ControlSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters")
        if (
            self.enabled
            and self.socket is None
            and self.token is None
            and not is_loopback_host(self.host)
        ):
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set control.token explicitly "
                "(and preferably tls_cert/tls_key) before exposing the control API"
            )
        return self


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


# Binance's kline intervals (WIRE_FACTS §1.5), for VenueSettings.bar_intervals.
KlineInterval = Literal[
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
]  # fmt: skip


class VenueSettings(BaseModel):
    model_config = _MODEL_CONFIG

    kind: Literal["binance", "alpaca"]  # the adapters botd has; see botd/venues/registry.py
    enabled: bool = True
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    # Ed25519 keys: the PEM file of the private key (instead of api_secret).
    private_key_file: Path | None = None
    passphrase: SecretStr | None = None
    base_url: str | None = None
    stream_url: str | None = None  # derived from base_url when unset
    # Alpaca: the stock market-data feed, "iex" (free), "sip" (paid) or "test" (FAKEPACA).
    stock_feed: Literal["iex", "sip", "test"] = "iex"
    testnet: bool = True
    symbols: list[str] = Field(default_factory=list)
    # Orders over the venue's WebSocket API ("ws") or REST ("rest"); user data always streams
    # over the WS API.
    trade_over: Literal["ws", "rest"] = "ws"
    ws_api_url: str | None = None  # derived from base_url when unset
    # Streams and the WS API reconnect (new connection first) before the venue's 24 h cut.
    max_connection_age: float = Field(default=84_600.0, ge=60, lt=86_400)
    # Seconds between re-reads of the symbols' trading rules (exchangeInfo).
    instruments_refresh: float = Field(default=3600.0, ge=10, le=86_400)
    # Binance: bar timeframes taken from the venue's klines (closed bars only) instead of
    # being built from trades, e.g. ["1m"]; Binance's kline intervals.
    bar_intervals: list[KlineInterval] = Field(default_factory=list)
    # Binance: keep a local order book per symbol (REST snapshot + depth diffs) and publish
    # BookSnapshot/BookDelta events; off by default (quotes and trades need no book).
    book_depth: bool = False


class HealthSettings(BaseModel):
    """What counts as healthy for ``botd health`` and the systemd watchdog."""

    model_config = _MODEL_CONFIG

    max_loop_lag_ms: float = Field(default=1000.0, gt=0, le=600_000)
    venue_grace: float = Field(default=60.0, ge=0, le=86_400)


NotifyEvent = Literal[
    "fills", "rejections", "strategy_halted", "venue_down", "venue_up", "kill_switch", "alerts"
]
_HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def daily_cron(spec: str) -> str:
    """``"HH:MM"`` or a 5-field cron expression as cron; ValueError if it is neither."""
    match = _HHMM_RE.match(spec.strip())
    if match:
        return f"{int(match.group(2))} {int(match.group(1))} * * *"
    try:
        CronTrigger.from_crontab(standard_cron(spec), timezone="UTC")
    except (ScheduleError, ValueError) as exc:
        raise ValueError(f'expected "HH:MM" or a 5-field cron expression: {exc}') from None
    return spec


class WebhookSettings(BaseModel):
    model_config = _MODEL_CONFIG

    url: SecretStr | None = None  # a secret: such URLs often carry a token
    secret: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0, le=120)

    @_field_validator("url")
    @classmethod
    def _check_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url


class TelegramSettings(BaseModel):
    model_config = _MODEL_CONFIG

    bot_token: SecretStr | None = None
    chat_id: str | None = None
    api_base: str = "https://api.telegram.org"
    parse_mode: Literal["HTML", "plain"] = "HTML"
    timeout: float = Field(default=10.0, gt=0, le=120)
    # Client-side pacing of this chat (Telegram allows ~1 message/s per chat, 20/min per group).
    min_interval: float = Field(default=1.0, ge=0, le=60)
    max_per_minute: int = Field(default=20, ge=0, le=1000)

    @_field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        # Numeric ids are natural to write unquoted in TOML.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @_field_validator("api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @_model_validator(mode="after")
    def _need_chat(self) -> TelegramSettings:
        if self.bot_token is not None and not self.chat_id:
            raise ValueError("chat_id is required when bot_token is set")
        return self


class NotifySettings(BaseModel):
    model_config = _MODEL_CONFIG

    events: list[NotifyEvent] = Field(default_factory=lambda: list(typing.get_args(NotifyEvent)))
    daily_summary: str = ""
    timezone: str = "UTC"
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    max_attempts: int = Field(default=6, ge=1, le=100)
    coalesce_window: float = Field(default=10.0, ge=0, le=3600)  # seconds; 0: off
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)

    @_field_validator("coalesce_window", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # "10s", "500ms", "2m" as well as a number of seconds (0: off).
        if not isinstance(value, str):
            return value
        try:
            return float(value)
        except ValueError:
            return parse_duration(value)

    @_field_validator("daily_summary")
    @classmethod
    def _check_daily(cls, value: str) -> str:
        if value.strip():
            daily_cron(value)
        return value.strip()

    @_field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. 'UTC', 'Europe/Paris')") from None
        return value


class Settings(BaseSettings):
    """The whole validated configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    log: LogSettings = Field(default_factory=LogSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    venues: dict[str, VenueSettings] = Field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() reads env and files from what it is given; constructing Settings
        # directly must not pick up the process environment behind its back.
        return (init_settings,)

    @_field_validator("venues")
    @classmethod
    def _check_venue_names(cls, venues: dict[str, VenueSettings]) -> dict[str, VenueSettings]:
        bad = [n for n in venues if not _VENUE_NAME_RE.match(n)]
        if bad:
            raise ValueError(
                "venue names must be lower-case letters, digits, '-' or single '_' "
                f"(they also appear in env and secret-file names), got {bad!r}"
            )
        return venues

    def secret_values(self) -> list[str]:
        """Every non-empty secret anywhere in the configuration, for log redaction."""
        found: list[str] = []
        _collect_secrets(self, found)
        return found

    def source_of(self, path: str) -> str:
        """Which source gave the value at dotted ``path`` (e.g. ``"log.level"``)."""
        return _lookup_origin(self._origins, tuple(path.split(".")))


def _collect_secrets(value: Any, found: list[str]) -> None:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if secret and secret not in found:
            found.append(secret)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
    elif isinstance(value, Mapping):
        for v in value.values():
            _collect_secrets(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_secrets(v, found)


class SettingsError(ConfigError):
    """Invalid configuration; ``str()`` is one line per problem, secrets masked."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


# ------------------------------------------------------------------------------ schema walking

_ANY: Any = Any


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_complex(annotation: Any) -> bool:
    ann = _unwrap(annotation)
    origin = typing.get_origin(ann)
    return _is_model(ann) or origin in (dict, list, tuple, set, frozenset) or ann in (dict, list)


def _holds_secret(annotation: Any) -> bool:
    ann = _unwrap(annotation)
    if isinstance(ann, type) and issubclass(ann, SecretStr):
        return True
    if _is_model(ann):
        return any(_holds_secret(f.annotation) for f in ann.model_fields.values())
    return any(_holds_secret(a) for a in typing.get_args(ann))


def _child(annotation: Any, key: str | int, by_name: bool) -> tuple[str | int, Any] | None:
    """The canonical key and annotation one step below ``annotation``, or None if unknown.

    ``by_name`` is for env and secret-file names: case-insensitive field matching.
    """
    ann = _unwrap(annotation)
    if ann is _ANY:
        return key, _ANY
    if _is_model(ann):
        fields = ann.model_fields
        if isinstance(key, str):
            if key in fields:
                return key, fields[key].annotation
            if by_name:
                for name, info in fields.items():
                    if name.lower() == key.lower():
                        return name, info.annotation
        return None
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is dict and isinstance(key, str):
        return key, (args[1] if len(args) == 2 else _ANY)
    if origin in (list, tuple, set, frozenset) and isinstance(key, int):
        return key, (args[0] if args else _ANY)
    return None


def _field_names(annotation: Any) -> list[str]:
    ann = _unwrap(annotation)
    return list(ann.model_fields) if _is_model(ann) else []


@dataclass(frozen=True)
class _Where:
    """Where a path lands in the schema: its annotation, or the deepest known parent."""

    known: bool
    annotation: Any


def _locate(path: Sequence[str | int]) -> _Where:
    ann: Any = Settings
    for key in path:
        step = _child(ann, key, by_name=False)
        if step is None:
            return _Where(False, ann)
        ann = step[1]
    return _Where(True, ann)


def _is_hidden(path: Sequence[str | int]) -> bool:
    """Whether a value at ``path`` must not be shown in an error message."""
    where = _locate(path)
    if where.known:
        return _holds_secret(where.annotation)
    # An unknown key is most often a typo of a real one; if it sits where secrets live, or is
    # named like a secret, its value is probably one.
    return _holds_secret(where.annotation) or any(is_sensitive_key(k) for k in path)


# ---------------------------------------------------------------------------- layers & origins


@dataclass(frozen=True)
class _Problem:
    path: tuple[str | int, ...]
    source: str
    message: str
    value: Any = None
    has_value: bool = False
    force_hide: bool = False


@dataclass(frozen=True)
class _Assignment:
    path: tuple[str, ...]
    value: Any
    source: str


def _lookup_origin(origins: Mapping[tuple[str, ...], str], path: tuple[str, ...]) -> str:
    for n in range(len(path), 0, -1):
        found = origins.get(path[:n])
        if found is not None:
            return found
    return DEFAULT_SOURCE


def _origins_below(origins: Mapping[tuple[str, ...], str], path: tuple[str, ...]) -> list[str]:
    n = len(path)
    return sorted({src for p, src in origins.items() if p[:n] == path})


class _Merged:
    """The deep-merged tree plus, for every leaf, the source that gave it."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.origins: dict[tuple[str, ...], str] = {}

    def apply(self, a: _Assignment) -> None:
        if not a.path:
            if isinstance(a.value, Mapping):
                for k, v in a.value.items():
                    self._put(self.tree, (str(k),), v, a.source)
            return
        node = self.tree
        for i, key in enumerate(a.path[:-1]):
            nxt = node.get(key)
            if not isinstance(nxt, dict):
                self._forget(a.path[: i + 1])
                nxt = node[key] = {}
            self.origins.pop(a.path[: i + 1], None)
            node = nxt
        self._put(node, a.path, a.value, a.source)

    def _put(self, parent: dict[str, Any], path: tuple[str, ...], value: Any, source: str) -> None:
        key = path[-1]
        existing = parent.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict) and value:
            # An empty table given by a lower layer no longer speaks for this node.
            self.origins.pop(path, None)
            for k, v in value.items():
                self._put(existing, (*path, str(k)), v, source)
            return
        self._forget(path)
        if isinstance(value, Mapping) and value:
            parent[key] = {}
            for k, v in value.items():
                self._put(parent[key], (*path, str(k)), v, source)
        else:
            parent[key] = dict(value) if isinstance(value, Mapping) else value
            self.origins[path] = source

    def _forget(self, path: tuple[str, ...]) -> None:
        n = len(path)
        for p in [p for p in self.origins if p[:n] == path]:
            del self.origins[p]


# ------------------------------------------------------------------------------------ sources


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _decode(annotation: Any, raw: str) -> Any:
    """A string from env or a secret file, decoded the way pydantic-settings would."""
    ann = _unwrap(annotation)
    if ann is _ANY:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if _is_complex(ann):
        return json.loads(raw)  # ValueError handled by the caller
    return raw


def _key_case(path: tuple[str, ...]) -> Callable[[str], str]:
    # Env and file names are case-insensitive; dict keys need one canonical case so that the
    # same venue or asset named in TOML and in the environment merge instead of coexisting.
    return str.upper if path == ("paper", "balances") else str.lower


def _resolve_name(segments: Sequence[str]) -> tuple[tuple[str, ...], Any] | tuple[None, str]:
    """Map ``["venues", "binance", "api_key"]`` to a canonical path and its annotation."""
    ann: Any = Settings
    path: list[str] = []
    for seg in segments:
        if not seg:
            return None, "empty name segment (check for a doubled or trailing '__')"
        unwrapped = _unwrap(ann)
        key = seg
        if not _is_model(unwrapped):
            key = _key_case(tuple(path))(seg)
        step = _child(ann, key, by_name=True)
        if step is None or not isinstance(step[0], str):
            names = _field_names(ann)
            where = ".".join(path) or "the top level"
            hint = _suggest(seg, names) if names else ""
            return None, f"{seg.lower()!r} is not a setting under {where}{hint}"
        path.append(step[0])
        ann = step[1]
    return tuple(path), ann


def _flat_source(
    name: str, raw: str, source: str, from_file: bool
) -> tuple[_Assignment | None, _Problem | None]:
    segments = name.split(NESTED_DELIMITER)
    guess = tuple(s.lower() for s in segments)
    path, ann_or_reason = _resolve_name(segments)
    if path is None:
        return None, _Problem(
            guess, source, f"unknown setting: {ann_or_reason}", raw, True, from_file
        )
    try:
        value = _decode(ann_or_reason, raw)
    except ValueError as exc:
        # json's message carries only positions, never the text itself.
        return None, _Problem(
            path, source, f"expected JSON for this list/table setting ({exc})", raw, True, from_file
        )
    return _Assignment(path, value, source), None


def _env_layer(environ: Mapping[str, str]) -> tuple[list[_Assignment], list[_Problem]]:
    out: list[_Assignment] = []
    problems: list[_Problem] = []
    for key in sorted(environ):
        if not key.upper().startswith(ENV_PREFIX):
            continue
        a, p = _flat_source(key[len(ENV_PREFIX) :], environ[key], f"environment {key}", False)
        if a is not None:
            out.append(a)
        if p is not None:
            problems.append(p)
    return out, problems


def _default_secrets_dirs(environ: Mapping[str, str]) -> list[Path]:
    dirs: list[Path] = []
    cred = environ.get("CREDENTIALS_DIRECTORY")
    if cred:
        dirs.append(Path(cred))
    dirs.append(DOCKER_SECRETS_DIR)
    return dirs


def _iter_secret_files(directory: Path) -> Iterator[Path]:
    for entry in sorted(directory.iterdir()):
        # Kubernetes-style secret volumes keep their real files under "..data"; the visible
        # names are symlinks into it.
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_file():
                yield entry
        except OSError:
            continue


def _secret_file_layer(
    dirs: Sequence[Path], lenient: frozenset[Path] = frozenset()
) -> tuple[list[_Assignment], list[_Problem]]:
    out: list[_Assignment] = []
    problems: list[_Problem] = []
    # The first directory wins (systemd credentials over /run/secrets): apply it last.
    for directory in reversed([d for d in dirs if d.is_dir()]):
        try:
            files = list(_iter_secret_files(directory))
        except OSError as exc:
            if directory in lenient:
                continue
            # Silently skipping would start the daemon without its keys.
            problems.append(
                _Problem((), f"secrets directory {directory}", f"cannot list: {exc.strerror}")
            )
            continue
        for file in files:
            name = file.name
            strict = name.lower().startswith("botd_")
            if strict:
                name = name[len("botd_") :]
            source = f"secret file {file}"
            # The name is looked at before the content is read: files that are not ours are
            # never opened.
            if not strict and name.split(NESTED_DELIMITER)[0].lower() not in Settings.model_fields:
                continue
            try:
                if file.stat().st_size > MAX_SECRET_FILE_BYTES:
                    problems.append(_Problem((), source, "file is too large for a secret"))
                    continue
                raw = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(_Problem((), source, f"cannot read: {type(exc).__name__}"))
                continue
            if raw.endswith("\r\n"):
                raw = raw[:-2]
            elif raw.endswith("\n"):
                raw = raw[:-1]
            a, p = _flat_source(name, raw, source, True)
            if a is not None:
                out.append(a)
            if p is not None:
                problems.append(p)
    return out, problems


def _toml_layer(path: Path) -> tuple[list[_Assignment], list[_Problem]]:
    source = f"file {path}"
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return [], [_Problem((), source, "config file not found")]
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)" and never quotes the content.
        return [], [_Problem((), source, f"TOML syntax error: {exc}")]
    except UnicodeDecodeError:
        return [], [_Problem((), source, "not valid UTF-8")]
    except OSError as exc:
        return [], [_Problem((), source, f"cannot read config file: {exc.strerror or exc}")]
    return [_Assignment((), data, source)], []


def _cli_layer(overrides: Mapping[str, Any]) -> list[_Assignment]:
    out: list[_Assignment] = []

    def walk(node: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            path = (*prefix, str(key))
            if value is None:
                # argparse leaves unspecified options as None: "not given", not "null".
                continue
            if isinstance(value, Mapping):
                walk(value, path)
                continue
            flag = _CLI_FLAG_OVERRIDES.get(path) or "--" + path[-1].replace("_", "-")
            out.append(_Assignment(path, value, f"command line {flag}"))

    walk(overrides, ())
    return out


def _find_config(config_path: Path | None, cwd: Path | None) -> Path | None:
    base = cwd if cwd is not None else Path.cwd()
    if config_path is not None:
        return config_path if config_path.is_absolute() else base / config_path
    candidate = base / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


# ------------------------------------------------------------------------------------- errors


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


def _show(value: Any) -> str:
    text = format(value, "f") if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _format_problem(p: _Problem) -> str:
    where = _dotted(p.path)
    head = f"{where}: " if where else ""
    if p.has_value:
        shown = HIDDEN if p.force_hide or _is_hidden(p.path) else _show(p.value)
        return f"{head}{shown} from {p.source}: {p.message}"
    return f"{head}{p.source}: {p.message}" if where else f"{p.source}: {p.message}"


def _validation_problems(
    exc: ValidationError, origins: Mapping[tuple[str, ...], str]
) -> list[_Problem]:
    problems: list[_Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(x for x in err["loc"] if x != "[key]")
        str_path = tuple(str(x) for x in loc)
        source = _lookup_origin(origins, str_path)
        kind = err["type"]
        message = err["msg"]
        if kind == "missing":
            below = _origins_below(origins, str_path[:-1]) if str_path else []
            source = f"(missing) in {_dotted(loc[:-1])}" + (
                " from " + ", ".join(below) if below else ""
            )
            problems.append(_Problem(loc, source, message))
            continue
        if kind == "extra_forbidden":
            names = _field_names(_locate(loc[:-1]).annotation)
            message = "unknown key" + (_suggest(str(loc[-1]), names) if loc else "")
        if source == DEFAULT_SOURCE and len(str_path) > 0:
            below = _origins_below(origins, str_path)
            if below:
                source = ", ".join(below)
        problems.append(_Problem(loc, source, message, err.get("input"), True))
    return problems


def _secret_like_inputs(assignments: Sequence[_Assignment]) -> list[str]:
    """Every string any layer supplied where a secret lives: masked in error text by value."""
    found: list[str] = []

    def walk(path: tuple[str, ...], value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk((*path, str(k)), v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(path, v)
        elif isinstance(value, str) and path and _is_hidden(path):
            found.append(value)

    for a in assignments:
        walk(a.path, a.value)
    return found


# ------------------------------------------------------------------------------------ loading


def load_settings(
    config_path: Path | None,
    cli_overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    secrets_dirs: Sequence[Path] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build the effective :class:`Settings`, or raise :class:`SettingsError` listing every
    problem. Nothing is read from ``os.environ``; pass it in.

    ``secrets_dirs`` defaults to ``$CREDENTIALS_DIRECTORY`` (from ``environ``) then
    ``/run/secrets``; missing directories are skipped and the first listed wins a conflict.
    """
    assignments: list[_Assignment] = []
    problems: list[_Problem] = []

    toml_path = _find_config(config_path, cwd)
    if toml_path is not None:
        a, p = _toml_layer(toml_path)
        assignments += a
        problems += p

    dirs = list(secrets_dirs) if secrets_dirs is not None else _default_secrets_dirs(environ)
    # On a bare host, /run/secrets may exist and belong to some other tool: not being able to
    # list it is no reason to refuse to start. Directories we were pointed at must be readable.
    lenient = frozenset({DOCKER_SECRETS_DIR}) if secrets_dirs is None else frozenset()
    a, p = _secret_file_layer(dirs, lenient)
    assignments += a
    problems += p

    a, p = _env_layer(environ)
    assignments += a
    problems += p

    assignments += _cli_layer(cli_overrides)

    merged = _Merged()
    for assignment in assignments:
        merged.apply(assignment)

    settings: Settings | None = None
    try:
        settings = Settings.model_validate(merged.tree)
    except ValidationError as exc:
        problems += _validation_problems(exc, merged.origins)

    if problems or settings is None:
        # Built outside the except block so the ValidationError (whose text would include
        # input values) is not chained onto what we raise.
        hidden_inputs = [
            p.value
            for p in problems
            if p.has_value and isinstance(p.value, str) and (p.force_hide or _is_hidden(p.path))
        ]
        redactor = Redactor([*_secret_like_inputs(assignments), *hidden_inputs])
        raise SettingsError([redactor.scrub(_format_problem(p)) for p in problems])

    settings._origins = dict(merged.origins)
    return settings


# ---------------------------------------------------------------------------------- rendering

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return json.dumps(MASK)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, Mapping):
        inner = ", ".join(
            f"{_toml_key(str(k))} = {json.dumps(MASK) if is_sensitive_key(k) else _toml_value(v)}"
            for k, v in value.items()
        )
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _render_table(
    lines: list[str],
    header: tuple[str, ...],
    items: Mapping[str, Any],
    origins: Mapping[tuple[str, ...], str],
    mask_keys: bool,
) -> None:
    lines.append("")
    lines.append("[" + ".".join(_toml_key(h) for h in header) + "]")
    subtables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in items.items():
        path = (*header, key)
        if isinstance(value, BaseModel):
            value = {f: getattr(value, f) for f in type(value).model_fields}
        if not mask_keys and isinstance(value, dict):
            subtables.append((key, value))
            continue
        source = _lookup_origin(origins, path)
        note = "" if source == DEFAULT_SOURCE else f"  # from {source}"
        if value is None:
            lines.append(f"# {_toml_key(key)} is not set")
            continue
        shown = json.dumps(MASK) if mask_keys and is_sensitive_key(key) else _toml_value(value)
        lines.append(f"{_toml_key(key)} = {shown}{note}")
    for key, sub in subtables:
        _render_table(lines, (*header, key), sub, origins, mask_keys)


def render_settings(settings: Settings) -> str:
    """The effective configuration as TOML, secrets shown as ``**********``.

    Each value that does not come from the defaults carries a comment naming its source.
    """
    origins = settings._origins
    lines = ["# Effective botd configuration. Secrets are masked."]
    for section in type(settings).model_fields:
        if section in ("venues", "strategies"):
            continue
        model: BaseModel = getattr(settings, section)
        values = {name: getattr(model, name) for name in type(model).model_fields}
        _render_table(lines, (section,), values, origins, mask_keys=False)
    if not settings.venues:
        lines += ["", "# no [venues.<name>] configured: trading the built-in paper venue only"]
    for name, venue in settings.venues.items():
        values = {f: getattr(venue, f) for f in type(venue).model_fields}
        _render_table(lines, ("venues", name), values, origins, mask_keys=False)
    for name, params in settings.strategies.items():
        _render_table(lines, ("strategies", name), params, origins, mask_keys=True)
    return "\n".join(lines) + "\n"

"""What a strategies folder holds, checked without running anything (``botd strategies``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from botd.strategy.loader import LoadedStrategy, LoadError, load_file, scan
from botd.strategy.params import ParamError, resolve_params

__all__ = ["StrategyInfo", "check_file", "describe_folder"]


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    id: str
    file: Path
    cls: str
    venue: str
    symbols: tuple[str, ...]
    timeframe: str
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | disabled | error
    problem: str = ""


def _info(item: LoadedStrategy, settings: Mapping[str, Any]) -> StrategyInfo:
    overrides = dict(settings.get(item.id, {}))
    cls = item.cls
    symbols = overrides.get("symbols") or (
        [overrides["symbol"]] if "symbol" in overrides else list(cls.declared_symbols())
    )
    info = StrategyInfo(
        id=item.id,
        file=item.path,
        cls=cls.__name__,
        venue=str(overrides.get("venue", cls.venue)),
        symbols=tuple(str(s) for s in symbols),
        timeframe=cls.timeframe,
    )
    try:
        params = resolve_params(cls.params(), overrides)
    except ParamError as exc:
        return replace(info, status="error", problem=f"strategies.{item.id}: {exc}")
    status = "disabled" if overrides.get("enabled", True) is False else "ok"
    return replace(info, params=params, status=status)


def _with_instances(
    loaded: list[LoadedStrategy], settings: Mapping[str, Any]
) -> list[LoadedStrategy]:
    by_id = {item.id: item for item in loaded}
    extra = [
        LoadedStrategy(sid, by_id[table["class"]].cls, by_id[table["class"]].path)
        for sid, table in settings.items()
        if isinstance(table, Mapping) and table.get("class") in by_id and sid not in by_id
    ]
    return [*loaded, *extra]


def describe_folder(
    folder: Path, settings: Mapping[str, Any]
) -> tuple[list[StrategyInfo], list[LoadError]]:
    result = scan(folder)
    infos = [_info(item, settings) for item in _with_instances(result.strategies, settings)]
    return infos, result.errors


def check_file(
    path: Path, settings: Mapping[str, Any]
) -> tuple[list[StrategyInfo], list[LoadError]]:
    if not path.is_file():
        return [], [LoadError(path, None, "no such file")]
    loaded, errors = load_file(path)
    infos = [_info(item, settings) for item in _with_instances(loaded, settings)]
    return infos, errors

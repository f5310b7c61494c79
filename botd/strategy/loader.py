"""Find strategy classes in the plugin folder.

Each file is imported as its own module under a unique name, so two files may define classes
with the same name and a broken file never affects another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from botd.strategy.api import API_VERSION, Strategy

__all__ = [
    "RULES_SUFFIX",
    "LoadError",
    "LoadResult",
    "LoadedStrategy",
    "is_strategy_file",
    "load_file",
    "scan",
]

_MODULE_PREFIX = "botd_strategies"
RULES_SUFFIX = ".rules.toml"


def is_strategy_file(path: Path) -> bool:
    """Python plugins and rules files; hidden, private and editor backup files are not."""
    name = path.name
    if name.startswith((".", "_")) or name.endswith("~"):
        return False
    return name.endswith((".py", RULES_SUFFIX))


@dataclass(frozen=True, slots=True)
class LoadedStrategy:
    id: str
    cls: type[Strategy]
    path: Path


@dataclass(frozen=True, slots=True)
class LoadError:
    path: Path
    line: int | None
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = str(self.path)
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class LoadResult:
    strategies: list[LoadedStrategy]
    errors: list[LoadError]


def scan(folder: Path) -> LoadResult:
    """Load every strategy file in ``folder``: ``*.py`` plugins and ``*.rules.toml`` rules
    (not those starting with ``_`` or ``.``)."""
    result = LoadResult([], [])
    if not folder.is_dir():
        result.errors.append(LoadError(folder, None, "strategies folder does not exist"))
        return result
    seen: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if is_strategy_file(p) and p.is_file()):
        loaded, errors = load_file(path)
        result.errors.extend(errors)
        for item in loaded:
            if item.id in seen:
                result.errors.append(
                    LoadError(
                        path, None, f"duplicate strategy id {item.id!r} (also in {seen[item.id]})"
                    )
                )
                continue
            seen[item.id] = path
            result.strategies.append(item)
    return result


def load_file(path: Path) -> tuple[list[LoadedStrategy], list[LoadError]]:
    if path.name.endswith(RULES_SUFFIX):
        return _load_rules(path)
    try:
        module = _import(path)
    except SyntaxError as exc:
        return [], [LoadError(path, exc.lineno, f"syntax error: {exc.msg}", exc.offset)]
    except Exception as exc:
        return [], [LoadError(path, _line_in(path, exc), f"{type(exc).__name__}: {exc}")]

    classes = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Strategy) and obj is not Strategy and obj.__module__ == module.__name__
    ]
    if not classes:
        return [], [LoadError(path, None, "no Strategy subclass defined in this file")]

    loaded: list[LoadedStrategy] = []
    errors: list[LoadError] = []
    for cls in sorted(classes, key=lambda c: _class_line(c)):
        sid = path.stem if len(classes) == 1 else f"{path.stem}:{cls.__name__}"
        problem = _check_class(cls)
        if problem:
            errors.append(LoadError(path, _class_line(cls), f"{cls.__name__}: {problem}"))
            continue
        loaded.append(LoadedStrategy(sid, cls, path))
    return loaded, errors


def _load_rules(path: Path) -> tuple[list[LoadedStrategy], list[LoadError]]:
    # Imported here: the rules compiler is only needed when a rules file exists.
    from botd.strategy.rules import RulesError, load_rules_file

    sid = path.name.removesuffix(RULES_SUFFIX)
    try:
        cls = load_rules_file(path)
    except RulesError as exc:
        return [], [LoadError(path, exc.line, exc.message, exc.column)]
    except OSError as exc:
        return [], [LoadError(path, None, f"cannot read: {exc}")]
    problem = _check_class(cls)
    if problem:
        return [], [LoadError(path, None, problem)]
    return [LoadedStrategy(sid, cls, path)], []


def _import(path: Path) -> ModuleType:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"{_MODULE_PREFIX}.{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered so dataclasses and pickling inside the plugin can find their module; replaced
    # (never merged) on reload.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _check_class(cls: type[Strategy]) -> str | None:
    version = getattr(cls, "api_version", None)
    if version != API_VERSION:
        return (
            f"api_version {version!r} is not supported; this botd runs strategy API version "
            f"{API_VERSION}: set `api_version = {API_VERSION}` and adapt the hooks"
        )
    if not cls.declared_symbols():
        return 'declares no symbol: set `symbol = "BTCUSDT"` or `symbols = [...]`'
    return None


def _class_line(cls: type) -> int:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return 0


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The deepest traceback line that lies in the plugin file itself."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return line

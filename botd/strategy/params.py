"""Declared, validated strategy parameters."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar, overload

__all__ = ["RESERVED_KEYS", "Param", "ParamError", "param", "resolve_params"]

# Keys of a [strategies.<id>] settings table that are not parameters.
RESERVED_KEYS = frozenset({"enabled", "venue", "symbol", "symbols", "class"})

T = TypeVar("T", Decimal, int, float, bool, str)


class ParamError(ValueError):
    pass


class Param(Generic[T]):
    """A class attribute that becomes a validated, overridable instance value.

    Reading it on an instance gives the effective value (the default unless settings override
    it); reading it on the class gives the :class:`Param` itself.
    """

    def __init__(
        self, default: T, *, min: T | None = None, max: T | None = None, doc: str = ""
    ) -> None:
        self.default: T = default
        self.kind: type = type(default)
        self.min: T | None = min
        self.max: T | None = max
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Param[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> T | Param[T]:
        if obj is None:
            return self
        values: dict[str, Any] = obj.__dict__.get("_param_values", {})
        return values.get(self.name, self.default)  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"parameter {self.name!r} is read-only; override it in settings")

    def coerce(self, raw: object) -> T:
        """Convert a settings value to this parameter's type and check its bounds."""
        value = self._convert(raw)
        if self.min is not None and value < self.min:
            raise ParamError(f"{self.name}: {value} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ParamError(f"{self.name}: {value} is above the maximum {self.max}")
        return value

    def _convert(self, raw: object) -> T:
        kind = self.kind
        expected = f"{self.name}: expected {kind.__name__}, got {type(raw).__name__} {raw!r}"
        if kind is bool:
            if isinstance(raw, bool):
                return raw  # type: ignore[return-value]
            raise ParamError(expected)
        if isinstance(raw, bool):
            raise ParamError(expected)
        if kind is Decimal:
            if isinstance(raw, Decimal | int | str | float):
                try:
                    # Floats go through their shortest repr so 0.1 stays 0.1.
                    value = Decimal(repr(raw) if isinstance(raw, float) else str(raw))
                except InvalidOperation:
                    raise ParamError(expected) from None
                if value.is_finite():
                    return value  # type: ignore[return-value]
            raise ParamError(expected)
        if kind is float and isinstance(raw, int | float | Decimal):
            return float(raw)  # type: ignore[return-value]
        if kind is int and isinstance(raw, int):
            return raw  # type: ignore[return-value]
        if kind is str and isinstance(raw, str):
            return raw  # type: ignore[return-value]
        raise ParamError(expected)


def param(default: T, *, min: T | None = None, max: T | None = None, doc: str = "") -> Any:
    """Declare a strategy parameter: ``size = param(Decimal("0.001"), min=Decimal(0))``.

    Typed as ``Any`` so that ``self.size`` reads as the value's type in user code.
    """
    return Param(default, min=min, max=max, doc=doc)


def resolve_params(
    declared: Mapping[str, Param[Any]], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Every declared parameter's effective value: the override from settings, validated, or
    the default. Unknown keys are errors: a typo must not silently keep the default."""
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key in RESERVED_KEYS:
            continue
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ParamError(f"unknown parameter {key!r} (known parameters: {known})")
        values[key] = declared[key].coerce(raw)
    for name, p in declared.items():
        if name not in values:
            values[name] = p.coerce(p.default)
    return values

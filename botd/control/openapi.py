"""The OpenAPI 3 description of the control API, served at ``/v1/openapi.json``.

Written by hand next to the handlers (botd/control/api.py, server.py); the property tests in
tests/integration/test_control_openapi.py check every response of a live daemon against it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NINT = {"type": ["integer", "null"]}
_BOOL = {"type": "boolean"}
_DECIMAL = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}
_NDECIMAL = {"type": ["string", "null"], "pattern": r"^-?\d+(\.\d+)?$"}
_TRADING_STATE = {"type": "string", "enum": ["active", "reducing", "halted"]}
_ORDER_STATUS = [
    "pending",
    "submitted",
    "accepted",
    "partially_filled",
    "pending_cancel",
    "unknown",
    "filled",
    "canceled",
    "rejected",
    "expired",
]


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{description}"}


_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {**_STR, "description": "stable, machine-readable"},
                    "message": {**_STR, "description": "for people"},
                }
            )
        }
    ),
    "Trading": _obj(
        {
            "state": _TRADING_STATE,
            "killed": {**_BOOL, "description": "the kill switch is engaged"},
            "reason": _STR,
        }
    ),
    "Venue": _obj(
        {
            "name": _STR,
            "connected": {**_BOOL, "description": "its market-data stream delivers"},
            "stream_events": _INT,
            "stream_reconnects": _INT,
            "last_event_age_s": {"type": ["number", "null"]},
            "stream_error": _NSTR,
            "reconciled": _BOOL,
            "last_reconcile_ns": _NINT,
            "reconcile_error": _NSTR,
            "trading_state": _TRADING_STATE,
            "rate_limiter": {"type": "string", "enum": ["ok", "paused", "banned"]},
        }
    ),
    "Strategy": _obj(
        {
            "id": _STR,
            "status": {
                "type": "string",
                "enum": ["running", "halted", "stopped", "disabled", "not_started"],
            },
            "disabled": {**_BOOL, "description": "disabled by an operator (persisted)"},
            "file": _NSTR,
            "venue": _NSTR,
            "symbols": {"type": "array", "items": _STR},
            "halt_reason": _NSTR,
            "hook_calls": _INT,
            "hook_errors": _INT,
            "hook_overruns": _INT,
            "trading_state": _TRADING_STATE,
            "open_orders": _INT,
        }
    ),
    "Order": _obj(
        {
            "client_order_id": _STR,
            "strategy": _STR,
            "venue": _STR,
            "symbol": _STR,
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "type": {"type": "string", "enum": ["market", "limit", "stop", "stop_limit"]},
            "qty": _DECIMAL,
            "price": _NDECIMAL,
            "tif": {"type": "string", "enum": ["gtc", "ioc", "fok"]},
            "post_only": _BOOL,
            "status": {"type": "string", "enum": _ORDER_STATUS},
            "open": _BOOL,
            "filled_qty": _DECIMAL,
            "avg_fill_price": _NDECIMAL,
            "venue_order_id": _NSTR,
            "reason": _STR,
            "ts_created": _INT,
            "ts_updated": _INT,
            "stop_price": _NDECIMAL,
        }
    ),
    "Position": _obj(
        {
            "strategy": _STR,
            "venue": _STR,
            "symbol": _STR,
            "qty": _DECIMAL,
            "avg_price": _DECIMAL,
            "realized_pnl": _DECIMAL,
            "unrealized_pnl": _NDECIMAL,
            "fees_quote": _DECIMAL,
            "mark": _NDECIMAL,
            "quote_asset": _NSTR,
        }
    ),
    "Balance": _obj(
        {
            "venue": _STR,
            "asset": _STR,
            "free": _DECIMAL,
            "locked": _DECIMAL,
            "total": _DECIMAL,
        }
    ),
    "PnlAmounts": _obj({"realized": _DECIMAL, "unrealized": _DECIMAL, "fees": _DECIMAL}),
    "StrategyPnl": _obj(
        {
            "strategy": _STR,
            "realized_today": {
                **_NDECIMAL,
                "description": "realized since 00:00 UTC, as the daily loss limit counts it",
            },
            "by_quote_asset": {
                "type": "object",
                "additionalProperties": _ref("PnlAmounts"),
                "description": "since the journal began, per quote asset",
            },
        }
    ),
    "StrategyResult": _obj(
        {
            "strategy": _ref("Strategy"),
            "persisted": {**_BOOL, "description": "written to the journal: survives restarts"},
        },
        ["strategy"],
    ),
    "TradingResult": _obj({"trading": _ref("Trading")}),
    "Reason": {
        "type": "object",
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
        "additionalProperties": False,
    },
}

_RESPONSES: dict[str, Any] = {
    name: _json(_ref("Error"), text)
    for name, text in {
        "BadRequest": "invalid query or body",
        "Unauthorized": "no or wrong bearer token",
        "NotFound": "no such strategy or order",
        "Conflict": "not possible in the current state",
        "Unprocessable": "the strategy file does not load",
    }.items()
}
_RESPONSES["Unauthorized"]["headers"] = {"WWW-Authenticate": {"schema": _STR, "required": True}}

_PUBLIC: list[dict[str, list[str]]] = []


def _op(
    summary: str,
    ok: dict[str, Any],
    *errors: str,
    public: bool = False,
    ok_code: str = "200",
    **extra: Any,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok_code: ok}
    if not public:
        responses["401"] = _error("Unauthorized")
    for code, name in (
        ("400", "BadRequest"),
        ("404", "NotFound"),
        ("409", "Conflict"),
        ("422", "Unprocessable"),
    ):
        if name in errors:
            responses[code] = _error(name)
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if public:
        op["security"] = _PUBLIC
    return op


def _reason_body(what: str) -> dict[str, Any]:
    return {
        "required": False,
        "description": f"optional reason, logged and recorded with the {what}",
        "content": {"application/json": {"schema": _ref("Reason")}},
    }


def _strategy_action(summary: str, *errors: str) -> dict[str, Any]:
    return {
        "post": _op(
            summary,
            _json(_ref("StrategyResult"), "done"),
            "NotFound",
            "Conflict",
            *errors,
        ),
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR}],
    }


def _ready() -> dict[str, Any]:
    body = _obj({"ready": _BOOL, "not_ready": {"type": "array", "items": _STR}})
    op = _op("readiness: every venue connected and reconciled", _json(body, "ready"), public=True)
    op["responses"]["503"] = _json(body, "not ready; not_ready says why")
    return op


def openapi_document(version: str, *, metrics_public: bool = False) -> dict[str, Any]:
    trading = _json(_ref("TradingResult"), "the trading state after the command")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "botd control API",
            "version": version,
            "description": "Operate a running botd. Every /v1 endpoint needs the bearer token.",
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
            "responses": _RESPONSES,
        },
        "paths": {
            "/health": {
                "get": _op(
                    "liveness: the event loop answers",
                    _json(_obj({"status": {"type": "string", "enum": ["ok"]}}), "alive"),
                    public=True,
                )
            },
            "/ready": {"get": _ready()},
            "/metrics": {
                "get": _op(
                    "Prometheus metrics (text exposition format)",
                    {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    public=metrics_public,
                )
            },
            "/v1/openapi.json": {
                "get": _op(
                    "this document",
                    _json({"type": "object"}, "the OpenAPI document"),
                    public=True,
                )
            },
            "/v1/status": {
                "get": _op(
                    "version, uptime, trading state, venues, strategies",
                    _json(
                        _obj(
                            {
                                "version": _STR,
                                "pid": _INT,
                                "uptime_s": {"type": "number"},
                                "ready": _BOOL,
                                "not_ready": {"type": "array", "items": _STR},
                                "trading": _ref("Trading"),
                                "venues": {"type": "array", "items": _ref("Venue")},
                                "strategies": {
                                    "type": "array",
                                    "items": _obj({"id": _STR, "status": _STR}),
                                },
                                "open_orders": _INT,
                                "journal_healthy": _BOOL,
                            }
                        ),
                        "status",
                    ),
                )
            },
            "/v1/strategies": {
                "get": _op(
                    "every strategy found in the strategies folder",
                    _json(
                        _obj({"strategies": {"type": "array", "items": _ref("Strategy")}}),
                        "strategies",
                    ),
                )
            },
            "/v1/strategies/{id}/enable": _strategy_action(
                "start a disabled, halted or stopped strategy (persisted)"
            ),
            "/v1/strategies/{id}/disable": _strategy_action(
                "stop a strategy and cancel its orders; it stays stopped across restarts"
            ),
            "/v1/strategies/{id}/reload": _strategy_action(
                "load the strategy's file again now", "Unprocessable"
            ),
            "/v1/orders": {
                "get": _op(
                    "open and recent orders, newest first",
                    _json(
                        _obj(
                            {
                                "orders": {"type": "array", "items": _ref("Order")},
                                "count": _INT,
                            }
                        ),
                        "orders",
                    ),
                    "BadRequest",
                    parameters=[
                        {"name": "strategy", "in": "query", "schema": _STR},
                        {"name": "symbol", "in": "query", "schema": _STR},
                        {"name": "venue", "in": "query", "schema": _STR},
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["open", *_ORDER_STATUS]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                )
            },
            "/v1/orders/{client_order_id}": {
                "delete": _op(
                    "cancel one open order",
                    _json(
                        _obj({"order": _ref("Order"), "cancel_requested": _BOOL}),
                        "cancel requested; the order's status follows",
                    ),
                    "NotFound",
                    "Conflict",
                    ok_code="202",
                ),
                "parameters": [
                    {"name": "client_order_id", "in": "path", "required": True, "schema": _STR}
                ],
            },
            "/v1/positions": {
                "get": _op(
                    "positions per strategy and instrument",
                    _json(
                        _obj({"positions": {"type": "array", "items": _ref("Position")}}),
                        "positions",
                    ),
                )
            },
            "/v1/balances": {
                "get": _op(
                    "balances per venue and asset",
                    _json(
                        _obj({"balances": {"type": "array", "items": _ref("Balance")}}),
                        "balances",
                    ),
                )
            },
            "/v1/pnl": {
                "get": _op(
                    "PnL per strategy",
                    _json(
                        _obj(
                            {
                                "day": _STR,
                                "realized_today": _DECIMAL,
                                "strategies": {"type": "array", "items": _ref("StrategyPnl")},
                            }
                        ),
                        "PnL",
                    ),
                )
            },
            "/v1/halt": {
                "post": _op(
                    "halt all new orders (open orders stay; cancels still go out)",
                    trading,
                    "BadRequest",
                    requestBody=_reason_body("halt"),
                )
            },
            "/v1/resume": {
                "post": _op(
                    "resume trading; releases the kill switch if engaged",
                    trading,
                    "BadRequest",
                    requestBody=_reason_body("resume"),
                )
            },
            "/v1/kill": {
                "post": _op(
                    "kill switch: halt everything and cancel every open order (persisted)",
                    _json(
                        _obj({"trading": _ref("Trading"), "cancelling": _INT}),
                        "engaged",
                    ),
                    "BadRequest",
                    requestBody=_reason_body("kill switch"),
                )
            },
        },
    }

"""Binance wire structs: documented payloads -> exact domain values; bad input -> WireError."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from botd.model import (
    Balance,
    BookLevel,
    Liquidity,
    OrderStatus,
    OrderType,
    Side,
)
from botd.venues.binance.schemas import (
    AggTradeEvent,
    BalanceUpdate,
    BookTickerEvent,
    DepthSnapshot,
    DepthUpdateEvent,
    ExecutionReportEvent,
    KlineEvent,
    OutboundAccountPosition,
    ServerShutdown,
    TradeEvent,
    UnhandledEvent,
    WireError,
    dec,
    decode_account,
    decode_combined,
    decode_depth,
    decode_exchange_info,
    decode_market_event,
    decode_my_trades,
    decode_open_orders,
    decode_order_response,
    decode_query_order,
    decode_user_event,
    map_order_status,
)

V = "binance"
MS = 1_000_000
RECV = 1_700_000_000_000_000_000


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --------------------------------------------------------------------------- dec


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.00100000", "0.001"), ("431.00000000", "431"), ("0", "0")],
)
def test_dec_exact(text: str, value: str) -> None:
    parsed = dec(text)
    assert parsed == Decimal(value)
    assert str(parsed) == text  # the wire's scale is kept, nothing went through float
    assert dec(text, signed=True) == parsed


def test_dec_sign_only_when_asked() -> None:
    assert dec("-1.5", signed=True) == Decimal("-1.5")
    with pytest.raises(WireError):
        dec("-1.5")
    with pytest.raises(WireError):
        dec("--1", signed=True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "1e5",
        "1E-3",
        "1_000",
        " 1",
        "1 ",
        "+1",
        "1.",
        ".5",
        "0x10",
        "1,5",
        "٣",
        "1" * 41,
        "0." + "1" * 41,
    ],
)
def test_dec_rejects_everything_else(text: str) -> None:
    with pytest.raises(WireError):
        dec(text)


# --------------------------------------------------------------------------- exchangeInfo

EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 1565246363776,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    ],
    "exchangeFilters": [],
    "symbols": [
        {
            "symbol": "ETHBTC",
            "status": "TRADING",
            "baseAsset": "ETH",
            "baseAssetPrecision": 8,
            "quoteAsset": "BTC",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT"],
            "icebergAllowed": True,
            "isSpotTradingAllowed": True,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.00000100",
                    "maxPrice": "100000.00000000",
                    "tickSize": "0.00000100",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00100000",
                    "maxQty": "100000.00000000",
                    "stepSize": "0.00100000",
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": "3000.00000000",
                    "stepSize": "0.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "10.00000000",
                    "applyMinToMarket": False,
                    "maxNotional": "10000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                # Filter kinds botd does not model must not break decoding.
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {
                    "filterType": "TRAILING_DELTA",
                    "minTrailingAboveDelta": 10,
                    "maxTrailingAboveDelta": 2000,
                    "minTrailingBelowDelta": 10,
                    "maxTrailingBelowDelta": 2000,
                },
                {
                    "filterType": "PERCENT_PRICE_BY_SIDE",
                    "bidMultiplierUp": "5",
                    "bidMultiplierDown": "0.2",
                    "askMultiplierUp": "5",
                    "askMultiplierDown": "0.2",
                    "avgPriceMins": 5,
                },
                {"filterType": "SOME_FUTURE_FILTER", "whatever": [1, {"x": None}]},
            ],
            "permissions": [],
            "permissionSets": [["SPOT", "MARGIN"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        },
        {
            "symbol": "OLDBTC",
            "status": "BREAK",
            "baseAsset": "OLD",
            "quoteAsset": "BTC",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0",
                    "maxPrice": "0",
                    "tickSize": "0.01",
                },
                {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "0", "stepSize": "1"},
                {
                    "filterType": "MIN_NOTIONAL",
                    "minNotional": "0.001",
                    "applyToMarket": True,
                    "avgPriceMins": 5,
                },
            ],
        },
    ],
}


def test_exchange_info_to_instruments() -> None:
    info = decode_exchange_info(enc(EXCHANGE_INFO))
    assert info.server_time == 1565246363776
    assert info.rate_limits[0].limit == 6000
    instruments = info.to_instruments(V)
    assert set(instruments) == {"ETHBTC"}  # OLDBTC is not TRADING
    eth = instruments["ETHBTC"]
    assert (eth.venue, eth.base, eth.quote) == (V, "ETH", "BTC")
    assert eth.tick_size == Decimal("0.000001")
    assert eth.step_size == Decimal("0.001")
    assert eth.min_qty == Decimal("0.001")
    assert eth.max_qty == Decimal("100000")
    assert eth.min_notional == Decimal("10")
    assert info.symbols[0].market_lot() == (Decimal(0), Decimal(3000), Decimal(0))


def test_exchange_info_min_notional_and_disabled_max() -> None:
    info = decode_exchange_info(enc(EXCHANGE_INFO))
    old = info.to_instruments(V, trading_only=False)["OLDBTC"]
    assert old.min_notional == Decimal("0.001")  # legacy MIN_NOTIONAL
    assert old.max_qty is None  # maxQty 0 disables the rule
    assert info.symbols[1].market_lot() is None


def test_exchange_info_without_filters_means_no_rules() -> None:
    payload = {
        "symbols": [{"symbol": "X", "status": "TRADING", "baseAsset": "A", "quoteAsset": "B"}]
    }
    inst = decode_exchange_info(enc(payload)).to_instruments(V)["X"]
    assert (inst.tick_size, inst.step_size, inst.min_qty, inst.min_notional) == (Decimal(0),) * 4


def test_exchange_info_bad_filter_value() -> None:
    bad = json.loads(json.dumps(EXCHANGE_INFO))
    bad["symbols"][0]["filters"][0]["tickSize"] = "NaN"
    info = decode_exchange_info(enc(bad))
    with pytest.raises(WireError):
        info.to_instruments(V)
    bad["symbols"][0]["filters"][0]["tickSize"] = "-0.1"
    with pytest.raises(WireError):
        decode_exchange_info(enc(bad)).to_instruments(V)


# --------------------------------------------------------------------------- depth


def test_depth_snapshot() -> None:
    snap = decode_depth(
        b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
        b'"asks":[["4.00000200","12.00000000"]]}'
    ).to_book_snapshot(V, "BNBBTC", RECV)
    assert snap.sequence == 1027024
    assert snap.bids == (BookLevel(Decimal("4"), Decimal("431")),)
    assert snap.asks == (BookLevel(Decimal("4.000002"), Decimal("12")),)
    assert snap.ts_recv == RECV


# --------------------------------------------------------------------------- orders

ACK = {
    "symbol": "BTCUSDT",
    "orderId": 28,
    "orderListId": -1,
    "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
    "transactTime": 1507725176595,
}
RESULT = {
    **ACK,
    "price": "0.00000000",
    "origQty": "10.00000000",
    "executedQty": "10.00000000",
    "origQuoteOrderQty": "0.000000",
    "cummulativeQuoteQty": "10.00000000",
    "status": "FILLED",
    "timeInForce": "GTC",
    "type": "MARKET",
    "side": "SELL",
    "workingTime": 1507725176595,
    "selfTradePreventionMode": "NONE",
}
FULL = {
    **RESULT,
    "price": "0.00000000",
    "origQty": "10.00000000",
    "executedQty": "10.00000000",
    "cummulativeQuoteQty": "39999.98000000",
    "fills": [
        {
            "price": "4000.00000000",
            "qty": "1.00000000",
            "commission": "4.00000000",
            "commissionAsset": "USDT",
            "tradeId": 56,
        },
        {
            "price": "3999.00000000",
            "qty": "5.00000000",
            "commission": "19.99500000",
            "commissionAsset": "USDT",
            "tradeId": 57,
        },
        {
            "price": "3998.00000000",
            "qty": "2.00000000",
            "commission": "7.99600000",
            "commissionAsset": "USDT",
            "tradeId": 58,
        },
        {
            "price": "3997.00000000",
            "qty": "1.00000000",
            "commission": "3.99700000",
            "commissionAsset": "USDT",
            "tradeId": 59,
        },
        {
            "price": "3995.00000000",
            "qty": "1.00000000",
            "commission": "3.99500000",
            "commissionAsset": "USDT",
            "tradeId": 60,
        },
    ],
}


def test_ack_response() -> None:
    resp = decode_order_response(enc(ACK))
    ack = resp.to_submit_ack()
    assert ack.client_order_id == "6gCrw2kRUAF9CvJDGP16IP"
    assert ack.venue_order_id == "28"
    assert ack.status is OrderStatus.ACCEPTED
    assert ack.ts_event == 1507725176595 * MS
    assert resp.to_execution_reports(V) == []
    with pytest.raises(WireError):
        resp.to_venue_order(V)


def test_result_response() -> None:
    resp = decode_order_response(enc(RESULT))
    assert resp.to_submit_ack().status is OrderStatus.FILLED
    order = resp.to_venue_order(V)
    assert order.side is Side.SELL
    assert order.type is OrderType.MARKET
    assert order.price is None  # market: "0.00000000"
    assert order.qty == order.filled_qty == Decimal(10)
    assert order.avg_price == Decimal(1)


def test_full_response_fills() -> None:
    reports = decode_order_response(enc(FULL)).to_execution_reports(V)
    assert [r.trade_id for r in reports] == ["56", "57", "58", "59", "60"]
    assert [r.status for r in reports] == [OrderStatus.PARTIALLY_FILLED] * 4 + [OrderStatus.FILLED]
    first = reports[0]
    assert (first.last_qty, first.last_price) == (Decimal(1), Decimal(4000))
    assert (first.fee, first.fee_asset) == (Decimal(4), "USDT")
    assert reports[1].fee == Decimal("19.995")
    assert all(r.liquidity is Liquidity.TAKER for r in reports)
    assert sum(r.last_qty for r in reports) == Decimal(10)
    assert {r.client_order_id for r in reports} == {"6gCrw2kRUAF9CvJDGP16IP"}
    order = decode_order_response(enc(FULL)).to_venue_order(V)
    assert order.avg_price == Decimal("3999.998")


def test_cancel_response_reports_our_client_id() -> None:
    cancel = {
        "symbol": "LTCBTC",
        "origClientOrderId": "myOrder1",
        "orderId": 4,
        "orderListId": -1,
        "clientOrderId": "cancelMyOrder1",
        "transactTime": 1684804350068,
        "price": "2.00000000",
        "origQty": "1.00000000",
        "executedQty": "0.00000000",
        "origQuoteOrderQty": "0.00000000",
        "cummulativeQuoteQty": "0.00000000",
        "status": "CANCELED",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
        "selfTradePreventionMode": "NONE",
    }
    order = decode_order_response(enc(cancel)).to_venue_order(V)
    assert order.client_order_id == "myOrder1"
    assert order.status is OrderStatus.CANCELED
    assert order.price == Decimal(2)
    assert order.avg_price is None
    assert order.ts_event == 1684804350068 * MS


QUERY = {
    "symbol": "LTCBTC",
    "orderId": 1,
    "orderListId": -1,
    "clientOrderId": "myOrder1",
    "price": "0.1",
    "origQty": "1.0",
    "executedQty": "0.4",
    "cummulativeQuoteQty": "0.04",
    "status": "PARTIALLY_FILLED",
    "timeInForce": "GTC",
    "type": "LIMIT_MAKER",
    "side": "BUY",
    "stopPrice": "0.0",
    "icebergQty": "0.0",
    "time": 1499827319559,
    "updateTime": 1499827319560,
    "isWorking": True,
    "workingTime": 1499827319559,
    "origQuoteOrderQty": "0.000000",
    "selfTradePreventionMode": "NONE",
}


def test_query_order() -> None:
    order = decode_query_order(enc(QUERY)).to_venue_order(V)
    assert order.venue_order_id == "1"
    assert order.client_order_id == "myOrder1"
    assert order.type is OrderType.LIMIT
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert (order.qty, order.price, order.filled_qty) == (
        Decimal(1),
        Decimal("0.1"),
        Decimal("0.4"),
    )
    assert order.avg_price == Decimal("0.1")
    assert order.ts_event == 1499827319560 * MS


def test_open_orders() -> None:
    orders = decode_open_orders(enc([QUERY, {**QUERY, "orderId": 2, "status": "NEW"}]))
    assert [o.to_venue_order(V).status for o in orders] == [
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.ACCEPTED,
    ]
    assert decode_open_orders(b"[]") == ()


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("NEW", OrderStatus.ACCEPTED),
        ("PENDING_NEW", OrderStatus.ACCEPTED),
        ("PARTIALLY_FILLED", OrderStatus.PARTIALLY_FILLED),
        ("FILLED", OrderStatus.FILLED),
        ("CANCELED", OrderStatus.CANCELED),
        ("PENDING_CANCEL", OrderStatus.PENDING_CANCEL),
        ("REJECTED", OrderStatus.REJECTED),
        ("EXPIRED", OrderStatus.EXPIRED),
        ("EXPIRED_IN_MATCH", OrderStatus.EXPIRED),
    ],
)
def test_status_mapping(wire: str, status: OrderStatus) -> None:
    assert map_order_status(wire) is status


def test_unknown_status_and_type_are_wire_errors() -> None:
    with pytest.raises(WireError):
        decode_query_order(enc({**QUERY, "status": "HALF_FILLED"})).to_venue_order(V)
    with pytest.raises(WireError):
        decode_query_order(enc({**QUERY, "type": "STOP_LOSS"})).to_venue_order(V)
    with pytest.raises(WireError):
        decode_query_order(enc({**QUERY, "side": "HOLD"})).to_venue_order(V)


# --------------------------------------------------------------------------- account


def test_account_balances() -> None:
    account = decode_account(
        enc(
            {
                "makerCommission": 15,
                "takerCommission": 15,
                "commissionRates": {
                    "maker": "0.00150000",
                    "taker": "0.00150000",
                    "buyer": "0.00000000",
                    "seller": "0.00000000",
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "updateTime": 123456789,
                "accountType": "SPOT",
                "balances": [
                    {"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"},
                    {"asset": "LTC", "free": "4763368.68006011", "locked": "0.00000001"},
                ],
                "permissions": ["SPOT"],
                "uid": 354937868,
            }
        )
    )
    assert account.to_balances() == {
        "BTC": Balance("BTC", Decimal("4723846.89208129"), Decimal(0)),
        "LTC": Balance("LTC", Decimal("4763368.68006011"), Decimal("0.00000001")),
    }


def test_my_trades() -> None:
    trades = decode_my_trades(
        enc(
            [
                {
                    "symbol": "BNBBTC",
                    "id": 28457,
                    "orderId": 100234,
                    "orderListId": -1,
                    "price": "4.00000100",
                    "qty": "12.00000000",
                    "quoteQty": "48.000012",
                    "commission": "10.10000000",
                    "commissionAsset": "BNB",
                    "time": 1499865549590,
                    "isBuyer": True,
                    "isMaker": False,
                    "isBestMatch": True,
                },
                {
                    "symbol": "BNBBTC",
                    "id": 28458,
                    "orderId": 100235,
                    "price": "4.1",
                    "qty": "1",
                    "commission": "0",
                    "commissionAsset": "BTC",
                    "time": 1499865549591,
                    "isBuyer": False,
                    "isMaker": True,
                },
            ]
        )
    )
    first = trades[0].to_execution_report(V, "cid-1", OrderStatus.FILLED)
    assert trades[0].side is Side.BUY
    assert first.venue_order_id == "100234"
    assert first.client_order_id == "cid-1"
    assert first.trade_id == "28457"
    assert (first.last_qty, first.last_price) == (Decimal(12), Decimal("4.000001"))
    assert (first.fee, first.fee_asset) == (Decimal("10.1"), "BNB")
    assert first.liquidity is Liquidity.TAKER
    assert first.ts_event == 1499865549590 * MS
    second = trades[1].to_execution_report(V, "cid-2", OrderStatus.PARTIALLY_FILLED)
    assert second.liquidity is Liquidity.MAKER
    assert trades[1].side is Side.SELL


# --------------------------------------------------------------------------- market streams

BOOK_TICKER = {
    "u": 400900217,
    "s": "BNBUSDT",
    "b": "25.35190000",
    "B": "31.21000000",
    "a": "25.36520000",
    "A": "40.66000000",
}
TRADE = {
    "e": "trade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "t": 12345,
    "p": "0.001",
    "q": "100",
    "T": 1672515782136,
    "m": True,
    "M": True,
}
AGG_TRADE = {
    "e": "aggTrade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "a": 12345,
    "p": "0.001",
    "q": "100",
    "f": 100,
    "l": 105,
    "T": 1672515782135,
    "m": False,
    "M": True,
}
DEPTH_UPDATE = {
    "e": "depthUpdate",
    "E": 1672515782136,
    "s": "BNBBTC",
    "U": 157,
    "u": 160,
    "b": [["0.0024", "10"]],
    "a": [["0.0026", "100"], ["0.0027", "0"]],
}
KLINE = {
    "e": "kline",
    "E": 1672515782136,
    "s": "BNBBTC",
    "k": {
        "t": 1672515780000,
        "T": 1672515839999,
        "s": "BNBBTC",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "0.0010",
        "c": "0.0020",
        "h": "0.0025",
        "l": "0.0015",
        "v": "1000",
        "n": 100,
        "x": False,
        "q": "1.0000",
        "V": "500",
        "Q": "0.500",
        "B": "123456",
    },
}


def test_book_ticker_to_quote() -> None:
    event = decode_market_event("bnbusdt@bookTicker", enc(BOOK_TICKER))
    assert isinstance(event, BookTickerEvent)
    quote = event.to_quote(V, RECV)
    assert (quote.bid, quote.bid_size) == (Decimal("25.3519"), Decimal("31.21"))
    assert (quote.ask, quote.ask_size) == (Decimal("25.3652"), Decimal("40.66"))
    assert quote.ts_event == quote.ts_recv == RECV  # no event time on the wire
    with_time = decode_market_event("bnbusdt@bookTicker", enc({**BOOK_TICKER, "E": 5}))
    assert isinstance(with_time, BookTickerEvent)
    assert with_time.to_quote(V, RECV).ts_event == 5 * MS


def test_trade_to_trade() -> None:
    event = decode_market_event("bnbbtc@trade", enc(TRADE))
    assert isinstance(event, TradeEvent)
    trade = event.to_trade(V, RECV)
    assert (trade.price, trade.size) == (Decimal("0.001"), Decimal(100))
    assert trade.side is Side.SELL  # buyer was maker: the seller hit the bid
    assert trade.trade_id == "12345"
    assert trade.ts_event == 1672515782136 * MS


def test_agg_trade_to_trade() -> None:
    event = decode_market_event("bnbbtc@aggTrade", enc(AGG_TRADE))
    assert isinstance(event, AggTradeEvent)
    trade = event.to_trade(V, RECV)
    assert trade.side is Side.BUY
    assert trade.trade_id == "12345"
    assert trade.ts_event == 1672515782135 * MS


def test_depth_update_to_deltas() -> None:
    event = decode_market_event("bnbbtc@depth@100ms", enc(DEPTH_UPDATE))
    assert isinstance(event, DepthUpdateEvent)
    assert (event.first_update_id, event.final_update_id) == (157, 160)
    deltas = event.to_book_deltas(V, RECV)
    assert [(d.side, d.price, d.size) for d in deltas] == [
        (Side.BUY, Decimal("0.0024"), Decimal(10)),
        (Side.SELL, Decimal("0.0026"), Decimal(100)),
        (Side.SELL, Decimal("0.0027"), Decimal(0)),
    ]
    assert {d.sequence for d in deltas} == {160}


def test_depth_update_with_inverted_ids_is_wire_error() -> None:
    event = decode_market_event("x@depth", enc({**DEPTH_UPDATE, "U": 161}))
    assert isinstance(event, DepthUpdateEvent)
    with pytest.raises(WireError):
        event.to_book_deltas(V, RECV)


def test_kline_to_bar() -> None:
    event = decode_market_event("bnbbtc@kline_1m", enc(KLINE))
    assert isinstance(event, KlineEvent)
    bar = event.to_bar(V, RECV)
    assert bar.timeframe == "1m"
    assert (bar.open, bar.high, bar.low, bar.close) == (
        Decimal("0.001"),
        Decimal("0.0025"),
        Decimal("0.0015"),
        Decimal("0.002"),
    )
    assert bar.volume == Decimal(1000)
    assert bar.start == 1672515780000 * MS
    assert bar.end == 1672515840000 * MS  # exclusive
    assert bar.end - bar.start == 60 * 1_000_000_000
    assert event.kline.closed is False


def test_combined_stream_dispatch() -> None:
    stream, event = decode_combined(enc({"stream": "bnbusdt@bookTicker", "data": BOOK_TICKER}))
    assert stream == "bnbusdt@bookTicker"
    assert isinstance(event, BookTickerEvent)
    _, event = decode_combined(enc({"stream": "bnbbtc@trade", "data": TRADE}))
    assert isinstance(event, TradeEvent)
    _, event = decode_combined(enc({"stream": "bnbbtc@depth", "data": DEPTH_UPDATE}))
    assert isinstance(event, DepthUpdateEvent)
    partial = {"lastUpdateId": 160, "bids": [["0.0024", "10"]], "asks": [["0.0026", "100"]]}
    _, event = decode_combined(enc({"stream": "bnbbtc@depth5@100ms", "data": partial}))
    assert isinstance(event, DepthSnapshot)
    assert event.last_update_id == 160
    _, event = decode_combined(
        enc({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1}})
    )
    assert isinstance(event, ServerShutdown)


# --------------------------------------------------------------------------- user data

EXEC_NEW = {
    "e": "executionReport",
    "E": 1499405658658,
    "s": "ETHBTC",
    "c": "mUvoqJxFIILMdfAW5iGSOW",
    "S": "BUY",
    "o": "LIMIT",
    "f": "GTC",
    "q": "1.00000000",
    "p": "0.10264410",
    "P": "0.00000000",
    "F": "0.00000000",
    "g": -1,
    "C": "",
    "x": "NEW",
    "X": "NEW",
    "r": "NONE",
    "i": 4293153,
    "l": "0.00000000",
    "z": "0.00000000",
    "L": "0.00000000",
    "n": "0",
    "N": None,
    "T": 1499405658657,
    "t": -1,
    "v": 3,
    "I": 8641984,
    "w": True,
    "m": False,
    "M": False,
    "O": 1499405658657,
    "Z": "0.00000000",
    "Y": "0.00000000",
    "Q": "0.00000000",
    "W": 1499405658657,
    "V": "NONE",
}
EXEC_TRADE = {
    **EXEC_NEW,
    "x": "TRADE",
    "X": "PARTIALLY_FILLED",
    "l": "0.40000000",
    "z": "0.40000000",
    "L": "0.10264410",
    "n": "0.00030000",
    "N": "BNB",
    "t": 987,
    "m": True,
    "Z": "0.04105764",
    "T": 1499405658700,
}


def test_execution_report_new() -> None:
    event = decode_user_event(enc({"subscriptionId": 0, "event": EXEC_NEW}))
    assert isinstance(event, ExecutionReportEvent)
    report = event.to_execution_report(V)
    assert report.status is OrderStatus.ACCEPTED
    assert report.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert report.venue_order_id == "4293153"
    assert report.last_qty == 0
    assert (report.fee, report.fee_asset, report.trade_id, report.reason) == (
        Decimal(0),
        "",
        "",
        "",
    )
    assert report.ts_event == 1499405658657 * MS
    assert report.extra["execution_type"] == "NEW"


def test_execution_report_trade() -> None:
    event = decode_user_event(enc(EXEC_TRADE))  # bare (legacy listenKey) form
    assert isinstance(event, ExecutionReportEvent)
    report = event.to_execution_report(V)
    assert report.status is OrderStatus.PARTIALLY_FILLED
    assert (report.last_qty, report.last_price) == (Decimal("0.4"), Decimal("0.1026441"))
    assert (report.fee, report.fee_asset) == (Decimal("0.0003"), "BNB")
    assert report.liquidity is Liquidity.MAKER
    assert report.trade_id == "987"
    assert report.extra["cum_quote"] == "0.04105764"


def test_execution_report_cancel_uses_original_client_id() -> None:
    cancel = {**EXEC_NEW, "x": "CANCELED", "X": "CANCELED", "c": "cancel-req-1", "C": "ours-1"}
    event = decode_user_event(enc({"subscriptionId": 3, "event": cancel}))
    assert isinstance(event, ExecutionReportEvent)
    report = event.to_execution_report(V)
    assert report.status is OrderStatus.CANCELED
    assert report.client_order_id == "ours-1"


@pytest.mark.parametrize(
    ("x", "status", "reason", "expected_status", "expected_reason"),
    [
        (
            "REJECTED",
            "REJECTED",
            "INSUFFICIENT_BALANCES",
            OrderStatus.REJECTED,
            "INSUFFICIENT_BALANCES",
        ),
        ("EXPIRED", "EXPIRED", "NONE", OrderStatus.EXPIRED, ""),
        ("TRADE_PREVENTION", "EXPIRED_IN_MATCH", "NONE", OrderStatus.EXPIRED, "EXPIRED_IN_MATCH"),
        ("TRADE", "FILLED", "NONE", OrderStatus.FILLED, ""),
    ],
)
def test_execution_report_terminal_states(
    x: str, status: str, reason: str, expected_status: OrderStatus, expected_reason: str
) -> None:
    event = decode_user_event(enc({**EXEC_NEW, "x": x, "X": status, "r": reason}))
    assert isinstance(event, ExecutionReportEvent)
    report = event.to_execution_report(V)
    assert report.status is expected_status
    assert report.reason == expected_reason


def test_outbound_account_position() -> None:
    event = decode_user_event(
        enc(
            {
                "subscriptionId": 0,
                "event": {
                    "e": "outboundAccountPosition",
                    "E": 1564034571105,
                    "u": 1564034571073,
                    "B": [{"a": "ETH", "f": "10000.000000", "l": "0.000000"}],
                },
            }
        )
    )
    assert isinstance(event, OutboundAccountPosition)
    assert event.to_balances() == {"ETH": Balance("ETH", Decimal(10000), Decimal(0))}


def test_balance_update() -> None:
    event = decode_user_event(
        enc(
            {
                "e": "balanceUpdate",
                "E": 1573200697110,
                "a": "BTC",
                "d": "-100.00000000",
                "T": 1573200697068,
            }
        )
    )
    assert isinstance(event, BalanceUpdate)
    assert event.to_delta() == ("BTC", Decimal(-100))


@pytest.mark.parametrize("kind", ["listStatus", "eventStreamTerminated", "externalLockUpdate"])
def test_unhandled_user_events(kind: str) -> None:
    event = decode_user_event(enc({"subscriptionId": 0, "event": {"e": kind, "E": 1}}))
    assert event == UnhandledEvent(kind)


def test_user_server_shutdown() -> None:
    event = decode_user_event(enc({"event": {"e": "serverShutdown", "E": 1}}))
    assert isinstance(event, ServerShutdown)


# --------------------------------------------------------------------------- hostile input

Decoder = Callable[[bytes], object]
DECODERS: dict[str, Decoder] = {
    "exchange_info": decode_exchange_info,
    "depth": decode_depth,
    "order": decode_order_response,
    "query": decode_query_order,
    "open_orders": decode_open_orders,
    "account": decode_account,
    "my_trades": decode_my_trades,
    "combined": decode_combined,
    "user": decode_user_event,
    "book_ticker": lambda b: decode_market_event("x@bookTicker", b),
    "partial_depth": lambda b: decode_market_event("x@depth20", b),
    "tagged": lambda b: decode_market_event("x@trade", b),
}
GARBAGE = [
    b"",
    b"not json",
    b"{",
    b"null",
    b"[]",
    b"{}",
    b"\xff\xfe\x00",
    b'{"e":"trade"' + b"," * 10,
    b"[" * 100_000 + b"]" * 100_000,  # nesting bomb
    b'"' + b"a" * 1_000_000 + b'"',
    b'{"stream":"x@trade","data":null}',
    b'{"subscriptionId":0,"event":[1,2]}',
    b'{"subscriptionId":0,"event":{"E":1}}',
    b'{"e":"executionReport","E":1}',
    b'{"e":"mystery","E":1}',
]


@pytest.mark.parametrize("payload", GARBAGE, ids=range(len(GARBAGE)))
@pytest.mark.parametrize("name", DECODERS)
def test_garbage_is_wire_error(name: str, payload: bytes) -> None:
    decoder = DECODERS[name]
    if name in {"open_orders", "my_trades"} and payload == b"[]":
        assert decoder(payload) == ()
        return
    if name == "user" and payload == b'{"e":"mystery","E":1}':
        assert decoder(payload) == UnhandledEvent("mystery")  # well-formed, just not ours
        return
    with pytest.raises(WireError):
        decoder(payload)


@pytest.mark.parametrize(
    "mutate",
    [
        {"p": 0.001},  # a float: numbers must be strings
        {"p": None},
        {"t": "12345"},  # an id as a string
        {"t": 1.5},
        {"m": "true"},
        {"s": 5},
    ],
)
def test_wrong_types_are_wire_errors(mutate: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        decode_market_event("x@trade", enc({**TRADE, **mutate}))


@pytest.mark.parametrize("field", ["p", "q"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e308", "", "-", "-1", "1" * 200])
def test_hostile_numbers_fail_at_conversion(field: str, value: str) -> None:
    event = decode_market_event("x@trade", enc({**TRADE, field: value}))
    assert isinstance(event, TradeEvent)
    with pytest.raises(WireError):
        event.to_trade(V, RECV)


def _report_of(payload: dict[str, Any]) -> object:
    event = decode_user_event(enc(payload))
    assert isinstance(event, ExecutionReportEvent)
    return event.to_execution_report(V)


@pytest.mark.parametrize(
    "bad", [{"X": "EXPLODED"}, {"l": "1e3"}, {"n": "NaN"}, {"z": None}, {"i": "7"}, {"t": None}]
)
def test_hostile_execution_report_values(bad: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        _report_of({**EXEC_TRADE, **bad})


def test_depth_level_shape_is_enforced() -> None:
    for levels in ([["1"]], [["1", "2", "3"]], [[1, 2]], [None]):
        with pytest.raises(WireError):
            decode_depth(enc({"lastUpdateId": 1, "bids": levels, "asks": []}))


def test_unknown_market_event_type_is_wire_error() -> None:
    with pytest.raises(WireError):
        decode_market_event("x@avgPrice", enc({"e": "avgPrice", "E": 1, "s": "X"}))


def test_unknown_fields_are_ignored() -> None:
    event = decode_market_event("x@trade", enc({**TRADE, "zz": [1, 2, {"deep": None}]}))
    assert isinstance(event, TradeEvent)

"""The ``then`` part of a rule: what to do when its condition becomes true.

Grammar (EBNF)::

    action = ( "buy" | "sell" ) amount [ "stop" expression ] [ "at" expression ]
           | "close"
           | "cancel" "all" ;
    amount = ( number | param_name ) [ ASSET ] ;

* ``buy 0.001`` — a market order for 0.001 of the base asset (BTC for BTCUSDT);
* ``buy 100 USDT`` — spend (or, for ``sell``, receive) 100 of the quote asset; naming the base
  asset (``buy 0.001 BTC``) is the same as naming none;
* ``... at <expression>`` — a limit order at that price (rounded onto the tick grid, down for a
  buy and up for a sell); the action is skipped while the price is unknown;
* ``... stop <expression>`` — a stop order: it waits until the last trade price reaches that
  price (at or above for a buy, at or below for a sell), then trades at market, or at the
  ``at`` price if one follows (a stop-limit); the stop is rounded onto the tick grid away from
  the market (up for a buy, down for a sell) and the action is skipped while it is unknown;
* ``close`` — flatten this rule's position in its symbol with a market order;
* ``cancel all`` — cancel this strategy's open orders in this rule's symbol.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from botd.model import Instrument, Side
from botd.strategy.api import Strategy
from botd.strategy.rules.compiler import Program
from botd.strategy.rules.errors import RulesError
from botd.strategy.rules.lexer import Token, TokenKind, tokenize
from botd.strategy.rules.parser import Expr, Parser

__all__ = ["ActionSpec", "bind_action", "check_action", "parse_action"]

Verb = Literal["buy", "sell", "close", "cancel"]
_VERBS: tuple[Verb, ...] = ("buy", "sell", "close", "cancel")


@dataclass(frozen=True, slots=True)
class ActionSpec:
    verb: Verb
    line: int
    column: int
    amount: Decimal | str | None = None  # a literal, or the name of a [params] entry
    amount_line: int = 0
    amount_column: int = 0
    asset: str | None = None
    asset_line: int = 0
    asset_column: int = 0
    price: Expr | None = None
    stop: Expr | None = None


def parse_action(text: str) -> ActionSpec:
    """Parse a ``then`` string. Positions are relative to ``text``."""
    tokens = tokenize(text)
    verb_tok = tokens[0]
    if verb_tok.kind is TokenKind.END:
        raise RulesError("the action is empty: write e.g. 'buy 0.001', 'sell 0.001' or 'close'")
    word = verb_tok.text if verb_tok.kind is TokenKind.NAME else ""
    if word not in _VERBS:
        close = difflib.get_close_matches(word, _VERBS, n=1) if word else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _at(
            f"unknown action {verb_tok.text!r}{hint}: expected buy, sell, close or cancel all",
            verb_tok,
        )
    verb: Verb = word
    if verb == "close":
        _expect_end(tokens[1], "after 'close'")
        return ActionSpec("close", verb_tok.line, verb_tok.column)
    if verb == "cancel":
        if not (tokens[1].kind is TokenKind.NAME and tokens[1].text == "all"):
            raise _at(f"expected 'all' after 'cancel', found {tokens[1].describe()}", tokens[1])
        _expect_end(tokens[2], "after 'cancel all'")
        return ActionSpec("cancel", verb_tok.line, verb_tok.column)
    return _parse_order(verb, tokens)


def _parse_order(verb: Verb, tokens: list[Token]) -> ActionSpec:
    verb_tok, amount_tok = tokens[0], tokens[1]
    amount: Decimal | str
    if amount_tok.kind is TokenKind.NUMBER:
        assert amount_tok.number is not None
        amount = amount_tok.number
        if amount <= 0:
            raise _at("the quantity must be positive", amount_tok)
    elif amount_tok.kind is TokenKind.NAME and amount_tok.text != "at":
        amount = amount_tok.text  # a [params] name, checked when the rules are bound
    elif amount_tok.kind is TokenKind.OP and amount_tok.text == "-":
        raise _at("the quantity must be positive", amount_tok)
    else:
        raise _at(
            f"expected a quantity after {verb!r} (e.g. '{verb} 0.001'), found "
            f"{amount_tok.describe()}",
            amount_tok,
        )
    i = 2
    asset_tok: Token | None = None
    if tokens[i].kind is TokenKind.NAME and tokens[i].text not in ("at", "stop"):
        asset_tok = tokens[i]
        if not (asset_tok.text.isupper() and asset_tok.text.isalnum()):
            raise _at(
                f"expected an asset in capitals (e.g. USDT) or 'at <price>', found "
                f"{asset_tok.describe()}",
                asset_tok,
            )
        i += 1
    stop: Expr | None = None
    if tokens[i].kind is TokenKind.NAME and tokens[i].text == "stop":
        parser = Parser(tokens, i + 1)
        stop = parser.expression()
        i = parser.pos
    price: Expr | None = None
    if tokens[i].kind is TokenKind.NAME and tokens[i].text == "at":
        parser = Parser(tokens, i + 1)
        price = parser.expression()
        parser.expect_end()
    elif stop is not None:
        _expect_end(tokens[i], "after the stop price: expected 'at <price>' or nothing")
    else:
        _expect_end(tokens[i], "in the order: expected 'stop <price>', 'at <price>' or nothing")
    return ActionSpec(
        verb,
        verb_tok.line,
        verb_tok.column,
        amount=amount,
        amount_line=amount_tok.line,
        amount_column=amount_tok.column,
        asset=asset_tok.text if asset_tok else None,
        asset_line=asset_tok.line if asset_tok else 0,
        asset_column=asset_tok.column if asset_tok else 0,
        price=price,
        stop=stop,
    )


def _at(message: str, tok: Token) -> RulesError:
    return RulesError(message, line=tok.line, column=tok.column)


def _expect_end(tok: Token, where: str) -> None:
    if tok.kind is not TokenKind.END:
        raise _at(f"unexpected {tok.describe()} {where}", tok)


def check_action(spec: ActionSpec, program: Program) -> None:
    """Everything that can be checked before the instrument is known: quantity and price."""
    if spec.verb in ("buy", "sell"):
        _amount(spec, program)
        if spec.price is not None:
            program.number(spec.price, "the price after 'at'")
        if spec.stop is not None:
            program.number(spec.stop, "the stop price after 'stop'")


def bind_action(
    spec: ActionSpec,
    program: Program,
    strategy: Strategy,
    symbol: str,
    instrument: Instrument,
) -> Callable[[], object]:
    """Check ``spec`` against the instrument and parameters; return the action to run."""
    if spec.verb == "close":
        return lambda: strategy.close_position(symbol)
    if spec.verb == "cancel":

        def cancel_all() -> None:
            for order in strategy.open_orders:
                if order.symbol == symbol:
                    strategy.cancel(order.client_order_id)

        return cancel_all

    side = Side.BUY if spec.verb == "buy" else Side.SELL
    amount = _amount(spec, program)
    by_quote = False
    if spec.asset is not None and spec.asset != instrument.base:
        if spec.asset != instrument.quote:
            raise RulesError(
                f"{spec.asset} is neither the base ({instrument.base}) nor the quote "
                f"({instrument.quote}) asset of {symbol}",
                line=spec.asset_line,
                column=spec.asset_column,
            )
        by_quote = True
    price_fn = None if spec.price is None else program.number(spec.price, "the price after 'at'")
    stop_fn = (
        None if spec.stop is None else program.number(spec.stop, "the stop price after 'stop'")
    )
    send = strategy.buy if side is Side.BUY else strategy.sell

    def order() -> object:
        stop: Decimal | None = None
        if stop_fn is not None:
            value = stop_fn()
            if value is None or value <= 0:
                strategy.log.warning(
                    "rule action skipped: its stop price is not known yet", symbol=symbol
                )
                return None
            stop = instrument.round_price(Decimal(repr(value)), side.opposite)
        price: Decimal | None = None
        if price_fn is not None:
            value = price_fn()
            if value is None or value <= 0:
                strategy.log.warning(
                    "rule action skipped: its limit price is not known yet", symbol=symbol
                )
                return None
            price = instrument.round_price(Decimal(repr(value)), side)
        if by_quote:
            return send(None, price, quote=amount, symbol=symbol, stop=stop)
        return send(amount, price, symbol=symbol, stop=stop)

    return order


def _amount(spec: ActionSpec, program: Program) -> Decimal:
    amount = spec.amount
    if isinstance(amount, Decimal):
        return amount
    assert amount is not None
    if amount not in program.params:
        known = ", ".join(sorted(program.params)) or "none are defined"
        raise RulesError(
            f"expected a quantity, found {amount!r}: use a number or a name from [params] "
            f"({known})",
            line=spec.amount_line,
            column=spec.amount_column,
        )
    value = program.params[amount]
    if value <= 0:
        raise RulesError(
            f"the quantity {amount} = {value} must be positive",
            line=spec.amount_line,
            column=spec.amount_column,
        )
    return value

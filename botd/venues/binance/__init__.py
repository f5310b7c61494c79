"""Binance Spot: signing, declared limits and error codes, wire schemas (WIRE_FACTS §1)."""

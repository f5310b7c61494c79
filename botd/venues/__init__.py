"""Venue adapters: the only code that talks to trading platforms."""

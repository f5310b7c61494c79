"""The Alpaca venue (US equities and crypto): REST trading API v2 and its streams."""

import pytest

from botd.durations import DurationError, parse_duration, timeframe_ns


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        (2.5, 2.5),
        ("1.5s", 1.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 minutes", "-1s", "0s", 0, -3, True, "1e9999s", "5mm"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(DurationError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_timeframes() -> None:
    assert timeframe_ns("1s") == 1_000_000_000
    assert timeframe_ns("15m") == 900 * 1_000_000_000
    for bad in ("0m", "1.5m", "m", "1w", "01m"):
        with pytest.raises(DurationError):
            timeframe_ns(bad)

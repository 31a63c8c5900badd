"""Durations in words, as pages, alerts and refusals show them."""

import pytest

from risk.durations import minutes_words


@pytest.mark.parametrize(("minutes", "words"), [
    (15, "15 minutes"),
    (60, "1 hour"),
    (90, "1 hour 30 minutes"),
    (480, "8 hours"),
    (24 * 60, "1 day"),
    (3 * 24 * 60, "3 days"),
    (14 * 24 * 60 + 125, "14 days 2 hours 5 minutes"),
])
def test_minutes_read_as_days_hours_and_minutes(minutes, words):
    assert minutes_words(minutes) == words

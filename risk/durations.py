"""Durations in words, as the rule table, group pages, alerts and refusals show them."""


def minutes_words(minutes: int) -> str:
    """480 → "8 hours", 4320 → "3 days"."""
    days, rest = divmod(int(minutes), 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' * (days != 1)}" if days else "",
             f"{hours} hour{'s' * (hours != 1)}" if hours else "",
             f"{minutes} minutes" if minutes else ""]
    return " ".join(part for part in parts if part)

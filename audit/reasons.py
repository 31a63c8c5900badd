"""The one rule for the free text a person gives with a change (a reason, a comment): trimmed,
present where the change asks for one, at most MAX_REASON_LENGTH characters. Every service
that takes one checks it here; each raises its own app's "invalid input" error, so the pages
and the API keep telling which field was wrong."""

from collections.abc import Callable

MAX_REASON_LENGTH = 2000


def check_reason(text: str | None, *, invalid: Callable[[str, str], Exception],
                 field: str = "reason", required: bool = True,
                 missing: str = "Give a reason: it is shown to everyone who is alerted.") -> str:
    """The trimmed text, or `invalid(field, message)` raised. `missing` tells the person why
    the text is asked for."""
    text = (text or "").strip()
    if required and not text:
        raise invalid(field, missing)
    if len(text) > MAX_REASON_LENGTH:
        what = "the reason" if field == "reason" else "it"
        raise invalid(field, f"Keep {what} under {MAX_REASON_LENGTH} characters.")
    return text

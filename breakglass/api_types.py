"""Input types shared by every part of the JSON API (breakglass/api.py, oncall/api.py)."""

from typing import Annotated

from pydantic import AfterValidator


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Every text the API accepts: PostgreSQL cannot store NUL, and no name or reason needs one.
Text = Annotated[str, AfterValidator(_refuse_nul)]

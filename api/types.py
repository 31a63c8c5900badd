"""Input types shared by every router of the JSON API."""

from typing import Annotated

from pydantic import AfterValidator, Field


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Every text the API accepts: PostgreSQL cannot store NUL, and no name or reason needs one.
Text = Annotated[str, AfterValidator(_refuse_nul)]

# Every number the API takes fits its column: a number out of range is a 400 naming the
# field, never a database error. Ids and audit sequence numbers are bigint columns; a page
# starts at most 2**31 - 1 rows in (SQLite and PostgreSQL refuse larger offsets + limits).
MAX_ID = 2**63 - 1
MAX_OFFSET = 2**31 - 1
MAX_PAGE_SIZE = 1000
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
SequenceNumber = Annotated[int, Field(ge=0, le=MAX_ID)]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]

"""Input types shared by every router of the JSON API."""

from typing import Annotated

from pydantic import AfterValidator, Field


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Every text the API accepts: PostgreSQL cannot store NUL, and no name or reason needs one.
# The document says so too, so that a client (and the fuzzer) knows before sending.
Text = Annotated[str, AfterValidator(_refuse_nul),
                 Field(json_schema_extra={"pattern": "^[^\\u0000]*$"})]

# Every number the API takes fits its column: a number out of range is a 400 naming the
# field, never a database error. Ids and audit sequence numbers are bigint columns.
MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 1000
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
SequenceNumber = Annotated[int, Field(ge=0, le=MAX_ID)]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Items per page, 1 to 1000.")]
# Where a list goes on: the `next` of the page before, passed back unchanged.
Cursor = Annotated[int, Field(ge=1, le=MAX_ID, description="The `next` of the previous page.")]

"""Cursor pagination for every list of the API: `?after=<cursor>&limit=N` answers
`{"items": [...], "next": <cursor or null>}`. The cursor is the last row's id on the page, so
rows added or removed meanwhile never shift a page: a walk sees each row at most once, and
every row that existed throughout exactly once."""

from django.db.models import QuerySet


def cursor_page(rows: QuerySet, *, after: int | None, limit: int,
                newest_first: bool = False) -> tuple[list, int | None]:
    """One page of `rows` in id order (newest first if asked) after the cursor `after`, and
    the cursor of the next page: None on the last one. One query: a row more than the page
    tells whether another page follows."""
    if after is not None:
        rows = rows.filter(pk__lt=after) if newest_first else rows.filter(pk__gt=after)
    page = list(rows.order_by("-pk" if newest_first else "pk")[: limit + 1])
    if len(page) <= limit:
        return page, None
    return page[:limit], page[limit - 1].pk

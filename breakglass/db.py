"""Hot-path SQL that PostgreSQL should plan once per connection, not once per call.

Django's PostgreSQL backend binds parameters on the client, and psycopg prepares only
statements bound on the server; so the access check's recursive query was planned on every
request (about three quarters of its cost). `prepared_cursor()` gives a server-binding cursor on
the same connection and transaction, wrapped like Django's own so that query counting and
logging still see it. Other databases get the ordinary cursor."""

from contextlib import contextmanager

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


@contextmanager
def prepared_cursor():
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    cursor = wrapper(psycopg.Cursor(connection.connection), connection)
    try:
        yield cursor
    finally:
        cursor.close()


def load_instance(model, field_names: list[str], row) -> object:
    """A model instance from a raw row, through the same converters the ORM applies (JSON
    text to objects, SQLite's date strings to datetimes)."""
    values = []
    for name, value in zip(field_names, row, strict=True):
        column = model._meta.get_field(name).get_col(model._meta.db_table)
        for convert in (*connection.ops.get_db_converters(column),
                        *column.get_db_converters(connection)):
            value = convert(value, column, connection)
        values.append(value)
    return model.from_db(connection.alias, field_names, values)

"""Hot-path SQL for every app: statements PostgreSQL plans once per connection, not per call.

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
    text to objects, SQLite's date strings to datetimes). The row's columns may come in any
    order: Model.from_db takes a partial row in the model's field order, so it is put in
    that order here (a column out of order would land in its neighbour's field)."""
    by_attname = {}
    for name, value in zip(field_names, row, strict=True):
        field = model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        for convert in (*connection.ops.get_db_converters(column),
                        *column.get_db_converters(connection)):
            value = convert(value, column, connection)
        by_attname[field.attname] = value
    ordered = [field.attname for field in model._meta.concrete_fields
               if field.attname in by_attname]
    return model.from_db(connection.alias, ordered, [by_attname[name] for name in ordered])


_INSERT_SQL: dict[tuple[type, str, str], str] = {}


def insert_statement(instance, *, unless_conflict: str = "") -> tuple[str, list]:
    """The INSERT (sql, params) of one new row, with the values the ORM's save() would write,
    returning its id: for fast_insert, or for another write's `with_first`."""
    model = type(instance)
    meta = model._meta
    if meta.auto_field is None:
        raise ValueError(f"{model.__name__} has no automatic primary key")
    fields = [field for field in meta.concrete_fields if field is not meta.auto_field]
    key = (model, connection.vendor, unless_conflict)
    if key not in _INSERT_SQL:
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        marks = ", ".join(["%s"] * len(fields))
        conflict = f" ON CONFLICT {unless_conflict} DO NOTHING" if unless_conflict else ""
        _INSERT_SQL[key] = (
            f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({marks}){conflict} RETURNING {connection.ops.quote_name(meta.pk.column)}")
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection)
              for field in fields]
    return _INSERT_SQL[key], values


def fast_insert(instance, *, unless_conflict: str = "", with_first: tuple = ()) -> bool:
    """INSERT one new row as a prepared statement, with the values the ORM's save() would
    write (field defaults, auto_now_add, the fields' own conversions), and set its id.

    `unless_conflict` names a unique constraint's conflict target ("(a, b) WHERE ..."): when
    the row would break it, nothing is written and False comes back. `with_first` is another
    write, (sql, params), or a list of them, that PostgreSQL runs in the same statement (a
    data-modifying WITH), saving round trips; callers pass it only where connection.vendor is
    "postgresql".

    For hot paths only, and only for models that nothing listens to: no save() override runs
    and no pre_save/post_save signal is sent (so never a model with history)."""
    sql, values = insert_statement(instance, unless_conflict=unless_conflict)
    if with_first:
        # One (sql, params), or a list of them: each becomes a data-modifying WITH.
        firsts = [with_first] if isinstance(with_first[0], str) else list(with_first)
        names = ", ".join(f"first{index} AS ({first_sql})"
                          for index, (first_sql, _) in enumerate(firsts))
        sql = f"WITH {names} {sql}"
        values = [*(param for _, params in firsts for param in params), *values]
    with prepared_cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


def insert_fields(model) -> list:
    """The fields a new row of `model` writes, in insert_rows' column order."""
    meta = model._meta
    return [field for field in meta.concrete_fields if field is not meta.auto_field]


def row_values(instance) -> list:
    """The values save() would write for the new row `instance`, as insert_rows takes them."""
    return [field.get_db_prep_save(field.pre_save(instance, True), connection)
            for field in insert_fields(type(instance))]


def insert_rows(model, rows: list[list]) -> None:
    """INSERT many new rows of `model` (each as row_values gives it) in one go, for services
    that change many objects at once: COPY on PostgreSQL (a few times faster than one INSERT
    of as many rows), one executemany elsewhere. Ids are not read back. As for fast_insert:
    no save() override runs and no signal is sent, so never a model with history."""
    fields = insert_fields(model)
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    if connection.vendor == "postgresql":
        with prepared_cursor() as cursor, cursor.copy(
                f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608

"""Tampering as an attacker with the database owner's rights would: the append-only triggers
are lifted for the duration, exactly what such an attacker could do."""

from contextlib import contextmanager

from django.db import connection

from audit import triggers


@contextmanager
def triggers_lifted():
    triggers.remove(connection)
    try:
        yield
    finally:
        triggers.install(connection)


def raw(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)

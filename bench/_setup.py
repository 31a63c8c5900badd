"""Shared set-up for the benchmarks: Django with the test settings and a throwaway database
(created like the test suite's, so SQLite or the PostgreSQL of DATABASE_URL), never the
deployment's own data."""

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402


@contextmanager
def throwaway_database():
    setup_test_environment()
    if connection.vendor == "sqlite":
        # A file, as in a deployment, so that verification can use several processes.
        connection.settings_dict["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "bench.sqlite3")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield connection.vendor
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


@contextmanager
def timer(result: dict, key: str):
    start = time.perf_counter()
    yield
    result[key] = time.perf_counter() - start

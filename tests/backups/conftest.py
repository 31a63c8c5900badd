"""Every backup test may read what it creates under its own tmp_path (see `backup_sources` in
tests/conftest.py, which tests elsewhere request by name)."""

import pytest

from tests.connectors.mariadb_server import mariadb_server  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def _backup_sources_under_tmp_path(backup_sources):
    return backup_sources

"""Every backup test may read what it creates under its own tmp_path (see `backup_sources` in
tests/conftest.py, which tests elsewhere request by name)."""

import pytest


@pytest.fixture(autouse=True)
def _backup_sources_under_tmp_path(backup_sources):
    return backup_sources

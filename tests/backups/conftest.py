"""Every backup test may read what it creates under its own tmp_path (see `backup_sources` in
tests/conftest.py, which tests elsewhere request by name)."""

import pytest

from tests.backups.sshd_server import own_ssh_server, ssh_server  # noqa: F401 (fixtures)
from tests.backups.wordpress_site import make_wordpress_site
from tests.connectors.mariadb_server import (
    mariadb_server,  # noqa: F401 (a fixture)
    quote_identifier,
)


@pytest.fixture(autouse=True)
def _backup_sources_under_tmp_path(backup_sources):
    return backup_sources


@pytest.fixture
def wordpress(mariadb_server, tmp_path, request):  # noqa: F811
    name = f"wp_{request.node.name[5:25]}".replace("-", "_")
    site = make_wordpress_site(mariadb_server, tmp_path / "site", name)
    yield site
    mariadb_server.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")


@pytest.fixture
def fresh_database(mariadb_server, wordpress):  # noqa: F811
    """An empty database the site's user may fill: where the new manager restores."""
    name = f"{wordpress.database}_new"[:60]
    mariadb_server.execute(f"CREATE DATABASE {quote_identifier(name)}")
    mariadb_server.execute(f"GRANT ALL PRIVILEGES ON {quote_identifier(name)}.* TO "
                           f"'{wordpress.user}'@'%'")
    yield name
    mariadb_server.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")

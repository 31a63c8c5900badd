"""Real target servers for the connector tests, one per kind, started once per session."""

from tests.connectors.mariadb_server import mariadb_server  # noqa: F401 (a fixture)
from tests.connectors.postgres_server import postgres_target  # noqa: F401 (a fixture)
from tests.connectors.slapd_server import ldap_server  # noqa: F401 (a fixture)

# The server fixture of each kind, for tests that walk every kind's lifecycle.
SERVER_FIXTURES = {"postgres_role": "postgres_target", "mariadb_role": "mariadb_server",
                   "ldap_group": "ldap_server"}

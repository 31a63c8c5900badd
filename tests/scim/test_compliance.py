"""The outside SCIM 2.0 compliance suite (scim2-tester, by the authors of scim2-server) against
/scim/v2/, in-process through the real WSGI handler: discovery, then create, read, replace,
patch, search and delete of Users and Groups with generated values for every published
attribute."""

import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_tester import Status, check_server

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """The real WSGI handler closes a connection found inside a transaction at the end of each
    request, which on PostgreSQL would break the test's own transaction; Django's test client
    turns this off the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_scim2_tester_passes_every_check(directory):
    _, token = directory
    client = WSGISCIMClient(get_wsgi_application(), base_url="http://testserver/scim/v2",
                            headers={"Authorization": f"Bearer {token}"})
    results = check_server(client)
    failures = [(result.status.name, result.resource_type, result.title, result.reason)
                for result in results if result.status != Status.SUCCESS]
    for failure in failures:
        print(*failure)
    print(f"scim2-tester: {len(results) - len(failures)} of {len(results)} checks passed")
    assert len(results) >= 100 and not failures

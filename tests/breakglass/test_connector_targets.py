"""The connector interface (breakglass/connectors/): every kind answers grant, revoke,
members and check; grant and revoke are idempotent; check speaks plainly."""

import pytest
from django.contrib.auth.models import Group as AuthGroup

from breakglass.connectors import target_class, target_for
from breakglass.connectors.base import ConnectorProblem, Target
from breakglass.models import Connector, Group

pytestmark = pytest.mark.django_db


@pytest.fixture
def staging(db):
    return Group.objects.create(name="Staging", slug="staging")


@pytest.mark.parametrize("kind", Connector.Kind.values)
def test_every_kind_has_a_target_answering_the_four_calls(kind):
    kind_class = target_class(kind)
    assert isinstance(kind_class(Connector(kind=kind)), Target)  # no abstract call left
    for call in ("grant", "revoke", "members", "check"):
        assert getattr(kind_class, call) is not getattr(Target, call), (kind, call)


def test_a_django_group_target_is_idempotent_and_lists_its_members(staging, member, owner):
    role = AuthGroup.objects.create(name="deployers")
    target = target_for(Connector.objects.create(name="deployers", group=staging,
                                                 kind="django_group", django_group=role))
    assert target.members() == set()
    assert target.grant(member.username) == target.grant(member.username)
    assert target.revoke(owner.username).endswith(":removed")  # never a member: still fine
    assert target.members() == {member.username}
    target.revoke(member.username)
    target.revoke(member.username)
    assert target.members() == set()
    assert "'deployers' is ready: 0 members" in target.check()


def test_a_webhook_target_cannot_list_members_and_checks_its_address(staging):
    target = target_for(Connector(group=staging, kind="webhook",
                                  url="https://hooks.example.org/breakglass"))
    assert target.members() is None
    assert "https://hooks.example.org/breakglass" in target.check()
    with pytest.raises(ConnectorProblem, match="https://"):
        target_for(Connector(group=staging, kind="webhook", url="ftp://example.org")).check()

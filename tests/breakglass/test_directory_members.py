"""A catalog group may take its members from a directory group the identity provider pushes
over SCIM: everyone in it has access like a member, in the decision, the catalog, and what
reconciliation wants on a real target; leaving the directory group ends that access."""

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import DirectoryGroup
from breakglass.access import access_by_group, decide
from breakglass.models import Connector
from breakglass.services import connectors
from breakglass.sql import holders_of
from tests.conftest import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform_team(outsider, database):
    team = DirectoryGroup.objects.create(display_name="Platform team", external_id="okta-42")
    database.members_from_directory_group = team
    database.save(update_fields=["members_from_directory_group"])
    return team


def test_joining_the_directory_group_gives_access_and_leaving_ends_it(outsider, database,
                                                                      platform_team):
    assert not decide(outsider, database).allowed
    platform_team.members.add(outsider)

    decision = decide(outsider, database)
    assert decision.allowed and decision.via == "directory"
    assert access_by_group(outsider)[database.pk].via == "directory"
    assert outsider.pk in holders_of(database.pk, timezone.now())

    platform_team.members.remove(outsider)
    assert not decide(outsider, database).allowed
    assert database.pk not in access_by_group(outsider)
    assert outsider.pk not in holders_of(database.pk, timezone.now())


def test_a_deactivated_account_in_the_directory_group_has_no_access(outsider, database,
                                                                    platform_team):
    platform_team.members.add(outsider)
    outsider.is_active = False
    outsider.save(update_fields=["is_active"])
    assert not decide(outsider, database).allowed
    assert outsider.pk not in holders_of(database.pk, timezone.now())


def test_the_group_page_says_where_the_members_come_from(client, outsider, database,
                                                         platform_team):
    platform_team.members.add(outsider)
    sign_in(client, outsider)
    page = client.get(reverse("breakglass:group-detail", args=[database.slug])).content.decode()
    assert "everyone in the directory group Platform team" in page
    catalog = client.get(reverse("breakglass:catalog")).content.decode()
    assert "member through the directory" in catalog


def test_reconciliation_lands_the_directory_members_on_the_target(outsider, database,
                                                                   platform_team):
    AuthGroup.objects.create(name="db-admins")
    call_command("create_connector", "django_group", "db-admins", "--group", database.slug,
                 "--no-check", "--option", "django_group=db-admins")
    connector = Connector.objects.get(name="db-admins")
    connector.mode = Connector.Mode.REPAIR
    connector.save(update_fields=["mode"])

    platform_team.members.add(outsider)
    result = connectors.reconcile(connector)
    assert result.granted == ["oscar"]
    assert outsider.groups.filter(name="db-admins").exists()

    platform_team.members.remove(outsider)
    result = connectors.reconcile(connector)
    assert result.revoked == ["oscar"]
    assert not outsider.groups.filter(name="db-admins").exists()

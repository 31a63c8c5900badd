"""Every list is a cursor page: walking `next` sees each item once, in order, whatever the
page size, and rows added meanwhile never shift a page."""

import pytest

from breakglass.models import Group
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant
from tests.api.conftest import call
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def walk(client, token, path: str, limit: int, **params) -> tuple[list, int]:
    items, after, pages = [], None, 0
    while True:
        query = {**params, "limit": limit, **({"after": after} if after else {})}
        page = call(client, "GET", path, token, **query)
        assert page.status_code == 200, page.content[:300]
        body = page.json()
        items += body["items"]
        pages += 1
        after = body["next"]
        if after is None:
            return items, pages


@pytest.fixture
def grants(database, member):
    """Seven grants: mark breaks glass, has it revoked, and again."""
    made = []
    for index in range(7):
        grant = break_glass(database, actor=member, reason=f"r{index}")
        made.append(grant.pk)
        if index < 6:
            revoke_grant(grant, actor=None, reason="done")
    return made


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8, 1000])
def test_walking_the_grants_sees_each_once_newest_first(client, app_token, grants, limit):
    items, pages = walk(client, app_token, "/grants", limit)
    assert [item["id"] for item in items] == sorted(grants, reverse=True)
    assert pages == max(1, -(-len(grants) // limit))


def test_filters_apply_to_every_page(client, app_token, grants):
    items, _ = walk(client, app_token, "/grants", 2, status="revoked")
    assert [item["id"] for item in items] == sorted(grants[:6], reverse=True)


def test_a_grant_made_during_a_walk_does_not_shift_the_pages(client, app_token, grants,
                                                             database, outsider):
    first = call(client, "GET", "/grants", app_token, limit=3).json()
    database.break_glass_users.add(outsider)
    break_glass(database, actor=outsider, reason="meanwhile")
    rest, _ = walk(client, app_token, "/grants", 3, after=first["next"])
    seen = [item["id"] for item in first["items"] + rest]
    assert seen == sorted(grants, reverse=True)


def test_walking_the_groups_sees_each_once_in_order(client, app_token, owner):
    slugs = []
    for index in range(5):
        group = Group.objects.create(name=f"G{index}", slug=f"g-{index}")
        group.owners.add(owner, make_user(f"second{index}", is_active=False))
        slugs.append(group.slug)
    items, pages = walk(client, app_token, "/groups", 2)
    assert [item["slug"] for item in items] == slugs and pages == 3
    assert {tuple(item["owners"]) for item in items} == {(owner.username,)}


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"after": 0},
                                   {"after": 2**63}, {"after": "abc"}])
@pytest.mark.parametrize("path", ["/grants", "/groups", "/requests"])
def test_limits_and_cursors_are_bounded(client, app_token, path, query):
    response = call(client, "GET", path, app_token, **query)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == next(iter(query))

"""One access decision. `decide()` is the SQL every check uses (pages, the API, connectors);
the catalog asks for every group at once through `access_by_group()`. Over generated
catalogs (nesting with cycles, memberships, grants in every status and at every instant,
on-call shifts, directory groups, deactivated accounts) both must allow exactly the same
groups."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import DirectoryGroup
from breakglass.access import access_by_group, decide
from breakglass.models import Grant, Group
from oncall.models import Schedule, Shift
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

GROUPS = 5
# What a grant may be at the moment of the decision.
GRANT_STATES = ["none", "live", "past_instant", "expired", "revoked", "requested", "denied"]
SHIFT_STATES = ["none", "now", "past", "future"]

catalogs = st.fixed_dictionaries({
    "active": st.booleans(),
    "contains": st.sets(st.tuples(st.integers(0, GROUPS - 1), st.integers(0, GROUPS - 1)),
                        max_size=8),
    "members": st.sets(st.integers(0, GROUPS - 1), max_size=2),
    "grants": st.lists(st.sampled_from(GRANT_STATES), min_size=GROUPS, max_size=GROUPS),
    "shifts": st.lists(st.sampled_from(SHIFT_STATES), min_size=GROUPS, max_size=GROUPS),
    # Groups taking members from a directory group: the subject is in it, or not.
    "directory": st.dictionaries(st.integers(0, GROUPS - 1), st.booleans(), max_size=2),
})


def build(catalog: dict, now) -> tuple:
    user = make_user("subject", is_active=catalog["active"])
    groups = [Group.objects.create(name=f"G{n}", slug=f"g{n}") for n in range(GROUPS)]
    for outer, inner in catalog["contains"]:
        if outer != inner:
            groups[outer].contains.add(groups[inner])
    for n in catalog["members"]:
        groups[n].members.add(user)
    hour = timedelta(hours=1)
    for group, state in zip(groups, catalog["grants"], strict=True):
        if state == "none":
            continue
        status = {"live": "active", "past_instant": "active"}.get(state, state)
        expires = now + hour if state == "live" else now - hour
        Grant.objects.create(
            user=user, group=group, status=status, source=Grant.Source.BREAK_GLASS,
            reason="generated", requested_at=now - 2 * hour,
            activated_at=None if status in ("requested", "denied") else now - 2 * hour,
            expires_at=None if status in ("requested", "denied") else expires)
    for group, state in zip(groups, catalog["shifts"], strict=True):
        if state == "none":
            continue
        schedule = Schedule.objects.create(name=f"rota {group.slug}", slug=f"rota-{group.slug}")
        group.members_from_schedule = schedule
        group.save(update_fields=["members_from_schedule"])
        starts = {"now": now - hour, "past": now - 3 * hour, "future": now + hour}[state]
        Shift.objects.create(schedule=schedule, user=user, starts_at=starts,
                             ends_at=starts + 2 * hour)
    for n, subject_in_it in catalog.get("directory", {}).items():
        directory_group = DirectoryGroup.objects.create(display_name=f"directory {n}")
        if subject_in_it:
            directory_group.members.add(user)
        groups[n].members_from_directory_group = directory_group
        groups[n].save(update_fields=["members_from_directory_group"])
    return user, groups


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(catalog=catalogs)
def test_the_catalog_allows_exactly_what_the_decision_allows(catalog):
    with transaction.atomic():
        now = timezone.now()
        user, groups = build(catalog, now)
        at_once = access_by_group(user, at=now)
        for group in groups:
            one = decide(user, group, at=now)
            assert one.allowed == (group.pk in at_once), (group.slug, one, at_once)
        transaction.set_rollback(True)


def test_the_generator_reaches_both_answers():
    """The property above is only worth something if its catalogs allow and deny: one
    catalog of each, built by hand, gives both answers."""
    with transaction.atomic():
        now = timezone.now()
        user, groups = build({"active": True, "contains": {(0, 1)}, "members": set(),
                              "grants": ["live", "none", "expired", "none", "none"],
                              "shifts": ["none", "none", "none", "now", "none"],
                              "directory": {2: False, 4: True}}, now)
        allowed = {group.slug for group in groups if decide(user, group, at=now).allowed}
        assert allowed == {"g0", "g1", "g3", "g4"} == {
            group.slug for group in groups if group.pk in access_by_group(user, at=now)}
        transaction.set_rollback(True)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(catalog=catalogs)
def test_the_holders_reconciliation_wants_are_exactly_who_the_decision_allows(catalog):
    """Reconciliation asks, per group, who holds access (breakglass.sql.holders_of): the
    decision turned around must name exactly the users decide() allows."""
    from breakglass.sql import holders_of

    with transaction.atomic():
        now = timezone.now()
        user, groups = build(catalog, now)
        bystander = make_user("bystander")
        for group in groups:
            holders = holders_of(group.pk, now)
            assert (user.pk in holders) == decide(user, group, at=now).allowed, group.slug
            assert bystander.pk not in holders
            assert set(holders.values()) <= {user.username}
        transaction.set_rollback(True)

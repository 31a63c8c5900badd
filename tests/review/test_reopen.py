"""After "Not us — revoke and lock": the account stays locked until the review of the aborted
use is closed; then an administrator reopens it, audited."""

import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Group
from breakglass.services.break_glass import break_glass
from review import abort, services
from review.models import Review

pytestmark = pytest.mark.django_db


@pytest.fixture
def aborted(owner, member, reviewer):
    group = Group.objects.create(name="Prod", slug="prod")
    group.owners.add(owner)
    group.break_glass_users.add(member)
    grant = break_glass(group, actor=member, reason="night")
    abort.abort(abort.abort_token(grant, reviewer), actor=reviewer)
    member.refresh_from_db()
    assert not member.is_active
    return member, Review.objects.get(grant=grant)


def test_the_account_stays_locked_until_the_review_is_closed(aborted, admin_user,
                                                             make_second_reviewer):
    member, review = aborted
    with pytest.raises(abort.AbortRefused, match=f"Review #{review.pk}"):
        abort.reopen_account(member, actor=admin_user)
    member.refresh_from_db()
    assert not member.is_active

    services.close_review(review, actor=make_second_reviewer, outcome="not_justified",
                          notes="credentials phished; rotated")
    assert abort.reopen_account(member, actor=admin_user) is True
    member.refresh_from_db()
    assert member.is_active
    event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_REOPENED)
    assert (event.actor_label, event.target_id, event.data["reviews"]) == (
        admin_user.username, str(member.pk), [review.pk])
    assert abort.reopen_account(member, actor=admin_user) is False  # already open: nothing


def test_only_administrators_reopen(aborted, reviewer):
    member, _ = aborted
    with pytest.raises(abort.AbortRefused, match="administrators"):
        abort.reopen_account(member, actor=reviewer)


def test_the_admin_action_reopens_after_review(aborted, admin_user, verified_client,
                                               make_second_reviewer):
    member, review = aborted
    client = verified_client(admin_user)
    url = reverse("admin:accounts_user_changelist")
    data = {"action": "reopen_after_review", "_selected_action": [member.pk]}
    client.post(url, data)
    member.refresh_from_db()
    assert not member.is_active  # the review is still open
    services.close_review(review, actor=make_second_reviewer, outcome="justified")
    client.post(url, data)
    member.refresh_from_db()
    assert member.is_active


@pytest.fixture
def make_second_reviewer(reviewer):
    from django.contrib.auth.models import Group as AuthGroup

    from accounts.models import SECURITY_REVIEWERS_GROUP
    from tests.conftest import make_user

    second = make_user("rhea")
    second.groups.add(AuthGroup.objects.get(name=SECURITY_REVIEWERS_GROUP))
    return second

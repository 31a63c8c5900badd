"""Item 8: nobody reviews a quorum use they took part in. The initiator, everyone who confirmed
the attempt and everyone who viewed its credentials is barred from closing its review, through
the real review page (403, audited as review.refused, the review stays open); a reviewer who
took no part closes it."""

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.urls import reverse
from django_otp import devices_for_user

from accounts.models import SECURITY_REVIEWERS_GROUP
from audit.catalogue import EventKind
from audit.models import AuditEvent
from recovery import services as recovery
from recovery.models import RecoveryAttempt
from review.models import Review
from tests.conftest import current_totp
from tests.recovery.helpers import enrolled_trio, root_policy

pytestmark = pytest.mark.django_db


def authenticator(user):
    """The user's confirmed authenticator app (the time-based device)."""
    return next(device for device in devices_for_user(user) if hasattr(device, "t0"))


def made_reviewer(user):
    user.groups.add(AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    return user


def code(user, steps_ahead: int = 0) -> str:
    return current_totp(authenticator(user), steps_ahead)


@pytest.fixture
def broken_quorum(db, verified_client):
    """alice starts, bob and erin confirm (all three are needed); erin views the credentials.
    bob and erin are security reviewers too, signed in before they confirm (a code is used
    once). Returns the attempt and each participant's signed-in client."""
    alice, bob, erin = enrolled_trio()
    for user in (bob, erin):
        made_reviewer(user)
    clients = {user.username: verified_client(user) for user in (bob, erin)}
    policy = root_policy([alice, bob, erin], secret="quorum-review-secret-5521")
    policy.required = 3
    policy.save()
    attempt = recovery.start_attempt(policy, actor=alice, reason="SSO is down",
                                     code=code(alice))
    recovery.confirm(attempt, actor=bob, code=code(bob, steps_ahead=1))
    recovery.confirm(attempt, actor=erin, code=code(erin, steps_ahead=1))
    attempt.refresh_from_db()
    assert attempt.status == RecoveryAttempt.Status.BROKEN
    recovery.reveal(attempt, actor=erin)
    return attempt, clients


def refusals(review) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=EventKind.REVIEW_REFUSED,
                                          target_id=str(review.pk)).order_by("sequence"))


@pytest.mark.parametrize("participant", ["bob", "erin"], ids=["confirmed", "viewed"])
def test_a_participant_cannot_close_the_review_of_the_use(broken_quorum, participant):
    attempt, clients = broken_quorum
    review = Review.objects.get(attempt=attempt)
    url = reverse("review:detail", args=[review.pk])
    client = clients[participant]

    page = client.get(url)
    assert page.status_code == 200
    assert b"You took part in this use" in page.content
    assert b"Close the review" not in page.content

    response = client.post(url, {"outcome": "justified", "notes": "we were there"})

    assert response.status_code == 403
    assert b"You took part in this use" in response.content
    review.refresh_from_db()
    assert review.is_open and review.reviewed_by is None
    [refusal] = refusals(review)
    assert (refusal.actor_label, refusal.outcome) == (participant, "denied")
    assert "took part" in refusal.reason
    assert not AuditEvent.objects.filter(kind=EventKind.REVIEW_CLOSED).exists()


def test_an_uninvolved_reviewer_closes_it(verified_client, broken_quorum, reviewer):
    attempt, clients = broken_quorum
    review = Review.objects.get(attempt=attempt)
    url = reverse("review:detail", args=[review.pk])
    assert clients["bob"].post(url, {"outcome": "justified"}).status_code == 403

    response = verified_client(reviewer).post(url, {"outcome": "justified",
                                                    "notes": "quorum held"})

    assert response.status_code == 302
    review.refresh_from_db()
    assert (review.outcome, review.reviewed_by) == ("justified", reviewer)
    assert AuditEvent.objects.filter(kind=EventKind.REVIEW_CLOSED,
                                     target_id=str(review.pk)).count() == 1

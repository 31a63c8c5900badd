"""PostgreSQL with real threads: an abort link clicked many times at once acts once, and two
reviewers closing one review at once record one outcome."""

import pytest

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from review import abort, services
from review.models import AbortUse, Review
from tests.audit.test_concurrency import run_in_threads
from tests.conftest import make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def grant(database, member):
    return break_glass(database, actor=member, reason="night")


def test_ten_simultaneous_clicks_on_one_abort_link_act_once(grant, reviewer, member):
    token = abort.abort_token(grant, reviewer)
    errors = run_in_threads(10, lambda index: abort.abort(token, actor=reviewer))
    # Every click but one is refused as a replay; none fails otherwise.
    assert len(errors) == 9 and all(isinstance(error, abort.AbortRefused) for error in errors)
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.ABORT_REFUSED).count() == 9
    assert AbortUse.objects.count() == 1
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.REVOKED
    member.refresh_from_db()
    assert not member.is_active


def test_two_reviewers_closing_one_review_at_once_record_one_outcome(grant, reviewer):
    from django.contrib.auth.models import Group as AuthGroup

    from accounts.models import SECURITY_REVIEWERS_GROUP

    second = make_user("rhea")
    second.groups.add(AuthGroup.objects.get(name=SECURITY_REVIEWERS_GROUP))
    review = Review.objects.get(grant=grant)
    outcomes = ["justified", "not_justified"]
    people = [reviewer, second]
    errors = run_in_threads(2, lambda index: services.close_review(
        review, actor=people[index], outcome=outcomes[index]))
    assert len(errors) == 1 and isinstance(errors[0], services.ReviewError)
    assert AuditEvent.objects.filter(kind=EventKind.REVIEW_CLOSED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.REVIEW_REFUSED).count() == 1
    review.refresh_from_db()
    assert review.outcome in outcomes and not review.is_open

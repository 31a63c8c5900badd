"""Reviews after the night (SPEC §2.8), walked through the real doors: every break-glass path
opens one review in its own transaction; security reviewers list, read and close them; a
reviewer never judges their own use; a closed review keeps its first outcome; reviews open for
72 hours alert every reviewer once; a group or policy may refuse the next use until the
previous one is reviewed."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import SECURITY_REVIEWERS_GROUP
from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from backups import services as backups
from backups.models import EmergencySession
from breakglass.models import Grant, Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import BreakGlassRefused
from breakglass.services.grants import revoke_grant
from recovery import services as recovery
from recovery.models import RecoveryAttempt
from review import services
from review.models import Review
from tests.conftest import current_totp, example_website, make_user
from tests.recovery.helpers import root_policy

pytestmark = pytest.mark.django_db

SECRET = "root-password-reviews-8812"


# --- the cast --------------------------------------------------------------------------------


def make_reviewer(username: str, mobile: str = ""):
    user = make_user(username, mobile=mobile)
    user.groups.add(AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    return user


@pytest.fixture
def second_reviewer(db):
    return make_reviewer("remy", mobile="+15555550142")


@pytest.fixture
def policy(trio):
    return root_policy(trio, secret=SECRET)


@pytest.fixture
def website(db):
    return example_website(make_user("bea"), owner_name="Olga Owner")


def totp(user, steps_ahead: int = 0) -> str:
    return current_totp(user.totpdevice_set.get(), steps_ahead)


def break_quorum(policy, initiator, confirmer, *, steps_ahead: int = 0, drill: bool = False):
    attempt = recovery.start_attempt(policy, actor=initiator, reason="SSO is down",
                                     code=totp(initiator, steps_ahead), drill=drill)
    recovery.confirm(attempt, actor=confirmer, code=totp(confirmer, steps_ahead))
    attempt.refresh_from_db()
    assert attempt.status == RecoveryAttempt.Status.BROKEN
    return attempt


def events(kind) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("sequence"))


def api_break_glass(client, token: str, **body):
    return client.post("/api/v1/break-glass", json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}")


def detail_url(review: Review) -> str:
    return reverse("review:detail", args=[review.pk])


# --- every path opens exactly one review ------------------------------------------------------


def test_break_glass_on_the_group_page_opens_one_review(verified_client, database, member):
    client = verified_client(member)
    response = client.post(reverse("breakglass:break-glass", args=["prod-db"]),
                           {"reason": "primary is down"})
    assert response.status_code == 302, response.content[:500]

    grant = Grant.objects.get()
    review = Review.objects.get()
    assert (review.path, review.grant, review.group, review.subject) == (
        Review.Path.GROUP, grant, database, member)
    assert (review.subject_label, review.is_drill, review.is_open) == ("mark", False, True)
    assert review.opened_at == grant.activated_at
    assert "first_access" in review.flags  # mark's first-ever use of this group


def test_break_glass_through_the_api_opens_one_review(client, database, member):
    token = create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]
    response = api_break_glass(client, token, user="mark", group="prod-db", reason="pager")
    assert response.status_code == 201, response.content

    review = Review.objects.get()
    assert (review.path, review.grant_id, review.group, review.subject) == (
        Review.Path.API, response.json()["id"], database, member)


def test_a_quorum_opens_one_review_when_the_glass_breaks(policy, trio):
    alice, bob, _ = trio
    attempt = recovery.start_attempt(policy, actor=alice, reason="SSO is down",
                                     code=totp(alice))
    assert not Review.objects.exists()  # one confirmation of two: no use yet
    recovery.confirm(attempt, actor=bob, code=totp(bob))

    review = Review.objects.get()
    attempt.refresh_from_db()
    assert (review.path, review.attempt, review.policy, review.subject) == (
        Review.Path.QUORUM, attempt, policy, alice)
    assert review.opened_at == attempt.broken_at and not review.is_drill
    assert events(EventKind.GLASS_BROKEN)[0].data["review"] == review.pk


def test_an_emergency_backup_code_opens_one_review(website):
    nonce = backups.send_code("example.org")
    send_due_deliveries()
    message = [m for m in sms.outbox if "emergency page" in m.body][-1]
    code = re.search(r"\b(\d{8})\b", message.body).group(1)
    with pytest.raises(backups.VerificationFailed):
        backups.verify_code(nonce, f"{(int(code) + 1) % 10**8:08d}")
    assert not Review.objects.exists()  # a wrong code is no use

    session = backups.verify_code(nonce, code)

    review = Review.objects.get()
    assert (review.path, review.emergency_session, review.website, review.subject) == (
        Review.Path.BACKUP, session, website, None)
    assert review.subject_label == "owner of example.org"
    assert EmergencySession.objects.count() == 1


# --- who sees reviews -------------------------------------------------------------------------


def test_reviewers_list_reviews_and_nobody_else_does(client, verified_client, database, member,
                                                     owner, outsider, reviewer):
    grant = break_glass(database, actor=member, reason="disk full")
    review = grant.review

    page = verified_client(reviewer).get(reverse("review:list"))
    assert page.status_code == 200
    assert f'href="{detail_url(review)}"' in page.content.decode()
    assert b"Group break glass" in page.content and b"Production DB" in page.content

    for user in (outsider, owner, member):  # a plain owner and the holder are no reviewers
        signed_in = verified_client(user)
        assert signed_in.get(reverse("review:list")).status_code == 403
        assert signed_in.get(detail_url(review)).status_code == 403
        assert signed_in.post(detail_url(review), {"outcome": "justified"}).status_code == 403
    anonymous = client.get(reverse("review:list"))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(
        reverse("accounts:login"))
    review.refresh_from_db()
    assert review.is_open and not events(EventKind.REVIEW_CLOSED)


def test_the_detail_page_shows_the_timeline_and_the_flags(verified_client, database, member,
                                                          reviewer, owner):
    grant = break_glass(database, actor=member, reason="replica lag 4 hours")
    send_due_deliveries()  # the alerts go out: they belong to the use's story

    page = verified_client(reviewer).get(detail_url(grant.review))
    content = page.content.decode()

    assert page.status_code == 200
    assert f"Review #{grant.review.pk}" in content and "Open" in content
    assert "replica lag 4 hours" in content
    assert 'badge--red">flagged</span> first-ever access to this group' in content
    assert f"{EventKind.GRANT_ACTIVATED.label}</strong> by mark" in content
    assert f"Alert delivered by email to {owner.email}" in content
    assert f"Alert delivered by email to {reviewer.email}" in content
    assert "Close the review" in content


def test_a_reviewer_closes_a_review_with_notes_and_a_post_mortem(verified_client, database,
                                                                 member, reviewer):
    review = break_glass(database, actor=member, reason="disk full").review
    client = verified_client(reviewer)

    response = client.post(detail_url(review), {
        "outcome": "justified", "notes": "  Disk full on the primary; runbook updated.  ",
        "postmortem_url": "https://wiki.example.org/pm/42"})

    assert response.status_code == 302 and response["Location"] == reverse("review:list")
    review.refresh_from_db()
    assert (review.outcome, review.reviewed_by, review.notes, review.postmortem_url) == (
        "justified", reviewer, "Disk full on the primary; runbook updated.",
        "https://wiki.example.org/pm/42")
    assert review.reviewed_at is not None and not review.is_open
    [closed] = events(EventKind.REVIEW_CLOSED)
    assert (closed.actor_label, closed.target_id, closed.reason) == (
        "rita", str(review.pk), "Disk full on the primary; runbook updated.")
    assert closed.data == {"outcome": "justified", "path": "group", "drill": False,
                           "postmortem_url": "https://wiki.example.org/pm/42"}
    listing = client.get(reverse("review:list")).content.decode()
    assert "Nothing waits for review." in listing
    assert "<strong>Justified</strong> (rita" in listing
    page = client.get(detail_url(review)).content.decode()
    assert 'href="https://wiki.example.org/pm/42"' in page and "Close the review" not in page


def test_a_post_mortem_link_without_a_scheme_is_taken_as_https(verified_client, database,
                                                               member, reviewer):
    review = break_glass(database, actor=member, reason="disk full").review
    response = verified_client(reviewer).post(detail_url(review), {
        "outcome": "not_justified", "postmortem_url": "wiki.example.org/pm/43"})
    assert response.status_code == 302
    review.refresh_from_db()
    assert (review.outcome, review.postmortem_url) == (
        "not_justified", "https://wiki.example.org/pm/43")


def test_a_reviewer_never_reviews_their_own_use(verified_client, database, reviewer,
                                                second_reviewer):
    database.break_glass_users.add(reviewer)
    review = break_glass(database, actor=reviewer, reason="on call").review
    client = verified_client(reviewer)

    page = client.get(detail_url(review))
    assert b"You made this use: another security reviewer reviews it." in page.content
    assert b"Close the review" not in page.content
    refused = client.post(detail_url(review), {"outcome": "justified", "notes": "all fine"})

    assert refused.status_code == 403
    assert b"You made this use" in refused.content
    review.refresh_from_db()
    assert review.is_open and (review.notes, review.reviewed_by) == ("", None)
    [refusal] = events(EventKind.REVIEW_REFUSED)
    assert (refusal.actor_label, refusal.outcome, refusal.target_id) == (
        "rita", "denied", str(review.pk))
    assert "You made this use" in refusal.reason
    assert not events(EventKind.REVIEW_CLOSED)
    with pytest.raises(services.ReviewRefused):
        services.close_review(review, actor=reviewer, outcome="justified")
    assert len(events(EventKind.REVIEW_REFUSED)) == 2

    # Another reviewer may.
    assert verified_client(second_reviewer).post(
        detail_url(review), {"outcome": "justified"}).status_code == 302
    review.refresh_from_db()
    assert review.reviewed_by == second_reviewer


def test_a_closed_review_keeps_its_first_outcome(verified_client, database, member, reviewer,
                                                 second_reviewer):
    review = break_glass(database, actor=member, reason="disk full").review
    assert verified_client(reviewer).post(detail_url(review), {
        "outcome": "justified", "notes": "first"}).status_code == 302

    again = verified_client(second_reviewer).post(detail_url(review), {
        "outcome": "not_justified", "notes": "second opinion"})

    assert again.status_code == 409
    review.refresh_from_db()
    assert (review.outcome, review.notes, review.reviewed_by) == ("justified", "first", reviewer)
    assert len(events(EventKind.REVIEW_CLOSED)) == 1
    [refusal] = events(EventKind.REVIEW_REFUSED)
    assert (refusal.actor_label, refusal.data) == ("remy", {"outcome": "not_justified"})
    assert "its outcome stands" in refusal.reason


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"outcome": "maybe"}, "outcome", "Select a valid choice"),
    ({"outcome": "drill"}, "outcome", "Select a valid choice"),  # not a drill
    ({"notes": "", "postmortem_url": ""}, "outcome", "This field is required"),
    ({"outcome": "justified", "postmortem_url": "javascript:alert(1)"}, "postmortem_url",
     "Enter a valid URL"),
    ({"outcome": "justified", "postmortem_url": "ftp://files.example.org/pm"},
     "postmortem_url", "must start with https://"),
    ({"outcome": "justified", "postmortem_url": "https://example.org/" + "p" * 500},
     "postmortem_url", "at most 500"),
    ({"outcome": "justified", "notes": "n" * 10_001}, "notes", "at most 10000"),
    ({"outcome": "justified", "notes": "nul\x00byte"}, "notes", "Null characters"),
])
def test_bad_outcomes_and_links_are_400_form_errors(verified_client, database, member,
                                                    reviewer, data, field, message):
    review = break_glass(database, actor=member, reason="disk full").review

    response = verified_client(reviewer).post(detail_url(review), data)

    assert response.status_code == 400
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert message.split()[0] in response.content.decode()
    review.refresh_from_db()
    assert review.is_open and review.notes == "" and review.postmortem_url == ""
    assert not events(EventKind.REVIEW_CLOSED)


def test_an_unknown_review_is_404(verified_client, reviewer):
    assert verified_client(reviewer).get("/review/999999/").status_code == 404


# --- escalation -------------------------------------------------------------------------------


def escalation_deliveries() -> set[tuple[str, str]]:
    return set(Delivery.objects.filter(event__kind=EventKind.REVIEW_ESCALATED)
               .values_list("channel", "recipient"))


def test_a_review_open_for_72_hours_alerts_every_reviewer_once(database, member, reviewer,
                                                               second_reviewer, owner):
    reviewer.mobile = "+15555550141"
    reviewer.save()
    review = break_glass(database, actor=member, reason="disk full").review
    opened = review.opened_at

    assert services.escalate_overdue(now=opened + timedelta(hours=71, minutes=59)) == 0
    assert services.escalate_overdue() == 0
    assert not events(EventKind.REVIEW_ESCALATED)

    later = opened + timedelta(hours=72)
    assert services.escalate_overdue(now=later) == 1
    review.refresh_from_db()
    assert review.escalated_at == later
    [escalated] = events(EventKind.REVIEW_ESCALATED)
    assert escalated.target_id == str(review.pk)
    assert escalation_deliveries() == {
        ("email", "rita@example.com"), ("sms", "+15555550141"),
        ("email", "remy@example.com"), ("sms", "+15555550142")}  # not the owner: reviewers
    send_due_deliveries()
    assert {m.to[0] for m in mail.outbox if "escalated" in (m.subject + m.body).lower()} == {
        "rita@example.com", "remy@example.com"}

    # The hourly task runs again, and again: nobody hears of it twice.
    assert services.escalate_overdue(now=later + timedelta(hours=1)) == 0
    assert services.escalate_overdue(now=later + timedelta(days=3)) == 0
    assert len(events(EventKind.REVIEW_ESCALATED)) == 1
    assert Delivery.objects.filter(event__kind=EventKind.REVIEW_ESCALATED).count() == 4


def test_escalation_finds_reviews_by_their_age_and_skips_closed_ones(database, member,
                                                                     reviewer, outsider):
    database.break_glass_users.add(outsider)
    old = break_glass(database, actor=member, reason="old use").review
    done = break_glass(database, actor=outsider, reason="closed use").review
    Review.objects.filter(pk__in=[old.pk, done.pk]).update(
        opened_at=timezone.now() - timedelta(hours=73))
    services.close_review(done, actor=reviewer, outcome="justified")

    assert services.escalate_overdue() == 1

    old.refresh_from_db()
    done.refresh_from_db()
    assert old.escalated_at is not None and done.escalated_at is None
    assert services.escalate_overdue() == 0
    page_reviews = [event.target_id for event in events(EventKind.REVIEW_ESCALATED)]
    assert page_reviews == [str(old.pk)]


# --- the previous use must be reviewed first --------------------------------------------------


@pytest.fixture
def gated(database, outsider):
    database.review_before_next = True
    database.save()
    database.break_glass_users.add(outsider)
    return database


def test_an_open_review_refuses_the_next_break_glass_until_closed(gated, member, outsider,
                                                                  owner, reviewer):
    first = break_glass(gated, actor=member, reason="first night")
    revoke_grant(first, actor=owner, reason="done")
    refusals = len(events(EventKind.GRANT_REFUSED))

    for who in (member, outsider):  # the same holder, or anyone else
        with pytest.raises(BreakGlassRefused,
                           match=rf"Review #{first.review.pk} of the previous use \(mark"):
            break_glass(gated, actor=who, reason="second night")
    assert Grant.objects.count() == 1 and Review.objects.count() == 1
    refused = events(EventKind.GRANT_REFUSED)[refusals:]
    assert [(event.actor_label, event.outcome) for event in refused] == [
        ("mark", "denied"), ("oscar", "denied")]
    assert all(f"Review #{first.review.pk}" in event.reason for event in refused)

    services.close_review(first.review, actor=reviewer, outcome="justified")

    second = break_glass(gated, actor=outsider, reason="second night")
    assert second.gives_access() and second.review.pk != first.review.pk
    # The new use's own review now blocks the one after it.
    with pytest.raises(BreakGlassRefused, match=rf"Review #{second.review.pk}\b"):
        break_glass(gated, actor=member, reason="third night")


def test_the_group_page_refuses_naming_the_review(verified_client, gated, member, owner,
                                                  reviewer):
    first = break_glass(gated, actor=member, reason="first night")
    revoke_grant(first, actor=owner, reason="done")
    client = verified_client(member)
    url = reverse("breakglass:break-glass", args=["prod-db"])

    refused = client.post(url, {"reason": "second night"})

    assert refused.status_code == 403
    assert f"Review #{first.review.pk} of the previous use" in refused.content.decode()
    assert Grant.objects.count() == 1
    services.close_review(first.review, actor=reviewer, outcome="justified")
    assert client.post(url, {"reason": "second night"}).status_code == 302
    assert Grant.objects.active().filter(user=member).count() == 1


def test_the_api_is_refused_too(client, gated, member, owner):
    token = create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]
    first = break_glass(gated, actor=member, reason="first night")
    revoke_grant(first, actor=owner, reason="done")

    response = api_break_glass(client, token, user="oscar", group="prod-db", reason="pager")

    assert response.status_code == 403
    assert f"Review #{first.review.pk}" in response.content.decode()
    assert Grant.objects.count() == 1


def test_pressing_again_on_ones_own_active_grant_still_extends(gated, member, outsider):
    first = break_glass(gated, actor=member, reason="first night")
    Grant.objects.filter(pk=first.pk).update(expires_at=timezone.now() + timedelta(minutes=5))

    again = break_glass(gated, actor=member, reason="still needed")

    assert again.pk == first.pk
    assert again.expires_at > timezone.now() + timedelta(hours=1)
    assert len(events(EventKind.GRANT_EXTENDED)) == 1
    assert Review.objects.count() == 1  # an extension is the same use
    with pytest.raises(BreakGlassRefused, match=f"Review #{first.review.pk}"):
        break_glass(gated, actor=outsider, reason="me too")  # a next use


def test_without_the_setting_open_reviews_do_not_block(database, member, owner):
    first = break_glass(database, actor=member, reason="first night")
    revoke_grant(first, actor=owner, reason="done")
    second = break_glass(database, actor=member, reason="second night")
    assert second.pk != first.pk and Review.objects.filter(outcome="").count() == 2


def test_a_quorum_policy_waits_for_its_review_too(policy, trio, reviewer):
    alice, bob, erin = trio
    policy.review_before_next = True
    policy.save()
    first = break_quorum(policy, alice, bob)
    refusals = len(events(EventKind.RECOVERY_REFUSED))

    with pytest.raises(recovery.RecoveryRefused, match=rf"Review #{first.review.pk}\b"):
        recovery.start_attempt(policy, actor=erin, reason="again", code=totp(erin))
    assert RecoveryAttempt.objects.count() == 1
    [refused] = events(EventKind.RECOVERY_REFUSED)[refusals:]
    assert refused.actor_label == "erin" and f"Review #{first.review.pk}" in refused.reason

    services.close_review(first.review, actor=reviewer, outcome="justified")

    second = break_quorum(policy, erin, alice, steps_ahead=1)
    assert second.pk != first.pk and second.review.is_open


# --- generated input --------------------------------------------------------------------------

FIELD_VALUE = st.one_of(
    st.sampled_from(["justified", "not_justified", "drill", "", "https://example.org/pm",
                     "javascript:alert(1)", "http://[::1", "//evil"]),
    st.text(max_size=200),
    st.text(max_size=20).map(lambda text: text + "\x00"),
    st.text(alphabet="ab/:.", max_size=600).map(lambda text: "https://" + text),
)


@pytest.fixture
def open_review(database, member) -> Review:
    return break_glass(database, actor=member, reason="disk full").review


@pytest.fixture
def reviewer_client(verified_client, reviewer):
    return verified_client(reviewer)  # once per test: a code is accepted once


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(["outcome", "notes", "postmortem_url", "x"]),
                            FIELD_VALUE, max_size=4))
def test_generated_review_posts_never_cause_a_500(reviewer_client, open_review, data):
    # Each example starts from the open review (the examples share one test transaction).
    Review.objects.filter(pk=open_review.pk).update(outcome="", notes="", postmortem_url="",
                                                    reviewed_by=None, reviewed_at=None)

    response = reviewer_client.post(detail_url(open_review), data)

    assert response.status_code in {302, 400}, response.status_code
    open_review.refresh_from_db()
    assert open_review.is_open == (response.status_code == 400)


def test_the_manager_rehearses_the_emergency_backup_as_a_drill(website, outsider):
    with pytest.raises(PermissionError, match="manager"):
        backups.start_drill(website, actor=outsider)
    sms.outbox.clear()
    nonce = backups.start_drill(website, actor=website.manager)
    send_due_deliveries()
    to_contact = [m for m in sms.outbox if "emergency page" in m.body][-1]
    assert to_contact.body.startswith("DRILL.")
    code = re.search(r"\b(\d{8})\b", to_contact.body).group(1)

    session = backups.verify_code(nonce, code)

    assert session.is_drill and session.expires_at - session.started_at == timedelta(minutes=15)
    review = Review.objects.get()
    assert (review.path, review.is_drill, review.website) == (Review.Path.BACKUP, True, website)
    assert events(EventKind.EMERGENCY_VERIFIED)[0].data["drill"] is True
    mail.outbox.clear()
    send_due_deliveries()
    subjects = [m.subject for m in mail.outbox if website.manager.email in m.to]
    assert subjects and all(subject.startswith("[Breakglass] [DRILL]") for subject in subjects)

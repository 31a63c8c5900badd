"""Drills: the same break-glass paths, labelled as rehearsals. A drill grant lasts at most 15
minutes, its alerts say DRILL, its review takes only the outcome "drill"; a quorum drill
breaks the glass without showing the real credentials. The dashboard warns when a group's
last drill is older than 90 days."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import SECURITY_REVIEWERS_GROUP
from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import relay_if_due
from breakglass.models import Grant, Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import BreakGlassRefused
from recovery import services as recovery
from recovery.models import EmergencyCredential, RecoveryAttempt
from review import services
from review.models import Review
from tests.conftest import PASSWORD, current_totp, make_user, sign_in
from tests.recovery.helpers import root_policy

pytestmark = pytest.mark.django_db

SECRET = "root-password-drills-5517"


@pytest.fixture
def reviewer(db):
    user = make_user("rita", mobile="+15555550141")
    user.groups.add(AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    return user


def drill_alerts() -> tuple[list, list]:
    assert relay_if_due()
    emails = [m for m in mail.outbox if "broke glass on Production DB" in m.subject]
    texts = [m for m in sms.outbox if "broke glass on Production DB" in m.body]
    return emails, texts


def assert_drill_grant(grant: Grant, minutes: int = 15) -> None:
    assert grant.is_drill and grant.status == Grant.Status.ACTIVE
    assert grant.expires_at - grant.activated_at == timedelta(minutes=minutes)
    [activated] = AuditEvent.objects.filter(kind=EventKind.GRANT_ACTIVATED, target_id=grant.pk)
    assert activated.data["drill"] is True
    review = Review.objects.get(grant=grant)
    assert review.is_drill and review.is_open


def test_a_drill_from_the_group_page(verified_client, database, member, owner, reviewer):
    member_client = verified_client(member)

    response = member_client.post(reverse("breakglass:break-glass", args=["prod-db"]),
                                  {"reason": "quarterly drill", "drill": "on"})

    assert response.status_code == 302, response.content[:500]
    grant = Grant.objects.get()
    assert_drill_grant(grant)
    emails, texts = drill_alerts()
    assert {m.to[0] for m in emails} == {owner.email, reviewer.email}
    for message in emails:
        assert message.subject.startswith("[Breakglass] [DRILL]")
        assert message.body.startswith("DRILL: a rehearsal, not an incident.")
    [text] = texts
    assert text.to == "+15555550141" and text.body.startswith("Breakglass DRILL")

    # Its review takes "drill" and nothing else.
    client = verified_client(reviewer)
    url = reverse("review:detail", args=[grant.review.pk])
    page = client.get(url).content.decode()
    assert 'badge--grey">DRILL</span>' in page and 'value="drill"' in page
    assert 'value="justified"' not in page
    for outcome in ("justified", "not_justified"):
        refused = client.post(url, {"outcome": outcome, "notes": "x"})
        assert refused.status_code == 400 and b"Select a valid choice" in refused.content
    with pytest.raises(services.InvalidReview, match="only of drills"):
        services.close_review(grant.review, actor=reviewer, outcome="justified")
    assert not AuditEvent.objects.filter(kind=EventKind.REVIEW_CLOSED).exists()
    done = client.post(url, {"outcome": "drill", "notes": "pager paged in 40 s"})
    assert done.status_code == 302
    closed = AuditEvent.objects.get(kind=EventKind.REVIEW_CLOSED)
    assert (closed.data["outcome"], closed.data["drill"]) == ("drill", True)


def test_a_real_use_is_never_closed_as_a_drill(database, member, reviewer):
    review = break_glass(database, actor=member, reason="outage").review
    assert not review.is_drill
    with pytest.raises(services.InvalidReview, match="only of drills"):
        services.close_review(review, actor=reviewer, outcome="drill")
    review.refresh_from_db()
    assert review.is_open


def test_a_drill_through_the_api(client, database, member, reviewer):
    token = create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]

    response = client.post("/api/v1/break-glass", json.dumps({
        "user": "mark", "group": "prod-db", "reason": "game day", "drill": True}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["drill"] is True
    grant = Grant.objects.get(pk=body["id"])
    assert_drill_grant(grant)
    assert grant.review.path == Review.Path.API
    emails, texts = drill_alerts()
    assert emails and all("[DRILL]" in m.subject for m in emails)
    assert texts and all("DRILL" in m.body for m in texts)


def test_a_real_use_through_the_api_says_drill_false_and_is_not_labelled(client, database,
                                                                         member, reviewer):
    token = create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]
    response = client.post("/api/v1/break-glass", json.dumps({
        "user": "mark", "group": "prod-db", "reason": "outage"}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 201 and response.json()["drill"] is False
    grant = Grant.objects.get()
    assert grant.expires_at - grant.activated_at == timedelta(hours=12)
    emails, texts = drill_alerts()
    assert emails and not any("DRILL" in m.subject or "DRILL" in m.body for m in emails)
    assert texts and not any("DRILL" in m.body for m in texts)


def test_a_shorter_group_duration_still_caps_a_drill(database, member):
    database.break_glass_minutes = 10
    database.save()
    grant = break_glass(database, actor=member, reason="drill", drill=True)
    assert_drill_grant(grant, minutes=10)


def test_pressing_again_on_a_drill_keeps_it_a_15_minute_drill(database, member):
    first = break_glass(database, actor=member, reason="drill", drill=True)
    again = break_glass(database, actor=member, reason="drill, still", drill=True)
    assert again.pk == first.pk and again.is_drill
    assert again.expires_at - timezone.now() <= timedelta(minutes=15)


def test_a_drill_cannot_be_turned_into_hours_of_access_by_pressing_again(database, member):
    drill = break_glass(database, actor=member, reason="drill", drill=True)
    assert drill.expires_at - drill.activated_at == timedelta(minutes=15)
    # Pressing "drill" again extends the drill, still by 15 minutes at most.
    again = break_glass(database, actor=member, reason="drill", drill=True)
    assert again.pk == drill.pk and again.expires_at - timezone.now() <= timedelta(minutes=15)

    # A real emergency during the drill: the drill ends, a real use opens with its own review.
    real = break_glass(database, actor=member, reason="real now")
    drill.refresh_from_db()
    assert real.pk != drill.pk and not real.is_drill and drill.status == "revoked"
    assert Review.objects.get(grant=real).is_drill is False

    # And a drill cannot run over real access.
    with pytest.raises(BreakGlassRefused, match="real access"):
        break_glass(database, actor=member, reason="drill", drill=True)
    assert Grant.objects.get(pk=real.pk).is_drill is False


# --- a quorum drill ---------------------------------------------------------------------------


@pytest.fixture
def policy(pair):
    return root_policy(pair, secret=SECRET, name="Root", slug="root")


def totp(user) -> str:
    return current_totp(user.totpdevice_set.get(), steps_ahead=1)


def test_a_quorum_drill_breaks_the_glass_and_shows_no_secret(client, policy, pair, reviewer):
    alice, bob = pair
    sign_in(client, bob)  # now, with the current code; the confirmations take the next ones
    attempt = recovery.start_attempt(policy, actor=alice, reason="drill", code=totp(alice),
                                     drill=True)
    recovery.confirm(attempt, actor=bob, code=totp(bob))
    attempt.refresh_from_db()

    assert attempt.is_drill and attempt.status == RecoveryAttempt.Status.BROKEN
    broken = AuditEvent.objects.get(kind=EventKind.GLASS_BROKEN)
    assert broken.data["drill"] is True
    review = Review.objects.get()
    assert (review.path, review.attempt, review.is_drill) == (Review.Path.QUORUM, attempt, True)

    # bob asks to see the credentials on the page: the drill keeps them sealed.
    shown = client.post(reverse("recovery:reveal", args=[attempt.pk]))
    assert shown.status_code == 200
    assert SECRET.encode() not in shown.content
    assert b"the real credentials stay sealed" in shown.content
    assert recovery.reveal(attempt, actor=alice)[0]["secret"] == ""
    credential = EmergencyCredential.objects.get()
    assert not credential.rotation_due and credential.revealed_at is None
    viewed = AuditEvent.objects.filter(kind=EventKind.CREDENTIALS_VIEWED)
    assert [event.data for event in viewed] == [{"credentials": [], "drill": True}] * 2

    with pytest.raises(services.InvalidReview):
        services.close_review(review, actor=reviewer, outcome="justified")
    services.close_review(review, actor=reviewer, outcome="drill", notes="quorum works")
    review.refresh_from_db()
    assert review.outcome == "drill"


# --- the 90-day warning, end to end ----------------------------------------------------------


def drill_cell(page: str, name: str) -> str:
    start = page.index(f">{name}</a>")
    return " ".join(page[start:page.index("</td>", start)].split())


def test_a_real_drill_is_due_again_after_ninety_days(verified_client, admin_user, database,
                                                      member, monkeypatch):
    break_glass(database, actor=member, reason="quarterly drill", drill=True)
    url = reverse("admin:review_dashboard")

    client = verified_client(admin_user)
    page = client.get(url).content.decode()
    assert "Drilled</span> 0 days ago" in drill_cell(page, "Production DB")
    assert "Drill due" not in page

    later = timezone.now() + timedelta(days=91)
    monkeypatch.setattr(timezone, "now", lambda: later)

    # 91 days on, the session has long expired: ada signs in again (with the next code, as
    # the authenticator takes each code once).
    client = Client()
    assert client.post(reverse("accounts:login"), {"username": "ada", "password": PASSWORD},
                       REMOTE_ADDR="192.0.2.10").status_code == 302
    assert client.post(reverse("accounts:verify"), {"code": current_totp(
        admin_user.totpdevice_set.get(), steps_ahead=1)}).status_code == 302
    response = client.get(url)
    assert response.status_code == 200, response.get("Location")
    page = response.content.decode()
    assert "Drill due</span> last one 91 days ago" in drill_cell(page, "Production DB")
    assert '<span class="badge badge--amber">Due</span> 1 of 1' in page

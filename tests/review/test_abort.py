"""The alert's "Not us — revoke and lock" link (review/abort.py), taken from a real alert: the
relay expands the break glass into one email and one SMS per reviewer and owner, each with a
link signed for that person. Signed in, a GET shows a confirmation and changes nothing; the
POST ends the grant and locks the holder, once. Replayed, expired, forged, borrowed or
strangers' links change nothing but leave an audit event."""

import hashlib
import re
import time
import types
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.core import mail, signing
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import SECURITY_REVIEWERS_GROUP, User
from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import relay_if_due, send_due_deliveries
from breakglass.access import has_access
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant
from review import abort_links
from review.models import AbortUse
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ABORT_PATH = re.compile(r"https?://[^/\s]+(/abort/[^/\s]+/)")


def make_reviewer(username: str, mobile: str = ""):
    user = make_user(username, mobile=mobile)
    user.groups.add(AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    return user


@pytest.fixture
def rita(db):
    return make_reviewer("rita", mobile="+15555550141")


@pytest.fixture
def remy(db):
    return make_reviewer("remy", mobile="+15555550142")


@pytest.fixture
def grant(database, member, rita, remy) -> Grant:
    """mark breaks glass; the worker's tick expands the alerts and sends them."""
    grant = break_glass(database, actor=member, reason="primary is down")
    assert relay_if_due()  # tasks run inline in tests
    return grant


def emailed_link(user: User) -> str:
    """The abort path in the break-glass email `user` received."""
    [message] = [m for m in mail.outbox if m.to == [user.email] and "broke glass" in m.subject]
    assert "Not us? Revoke and lock (works once, for 24 hours):" in message.body
    return ABORT_PATH.search(message.body).group(1)


def state(grant: Grant) -> tuple:
    grant.refresh_from_db()
    grant.user.refresh_from_db()
    return (grant.status, grant.user.is_active, AbortUse.objects.count(),
            AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED).count())


def refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=EventKind.ABORT_REFUSED).order_by("sequence"))


def token_of(path: str) -> str:
    return path.split("/")[2]


UNTOUCHED = (Grant.Status.ACTIVE, True, 0, 0)


# --- the links in the alerts ------------------------------------------------------------------


def test_each_reviewer_and_owner_gets_a_link_of_their_own(grant, owner, rita, remy, member):
    links = {user.username: emailed_link(user) for user in (owner, rita, remy)}
    assert len(set(links.values())) == 3
    for username, path in links.items():
        assert abort_links.read(token_of(path)) == (grant.pk, User.objects.get(
            username=username).pk)
    # The holder hears nothing of a link to revoke themself.
    assert not [m for m in mail.outbox if m.to == [member.email] and "broke glass" in m.subject]
    texted = {m.to: m.body for m in sms.outbox if "broke glass" in m.body}
    assert set(texted) == {"+15555550141", "+15555550142"}
    for body in texted.values():
        assert "Not us: http" in body and "/abort/" in body
    # rita's SMS carries the same link as her email: once used on one, it is spent on both.
    assert ABORT_PATH.search(texted["+15555550141"]).group(1) == links["rita"]
    assert ABORT_PATH.search(texted["+15555550142"]).group(1) == links["remy"]


def test_a_get_shows_the_confirmation_and_changes_nothing(verified_client, grant, rita):
    client = verified_client(rita)
    path = emailed_link(rita)

    for _ in range(2):  # a mail scanner or a second look: still nothing happens
        page = client.get(path)
        assert page.status_code == 200
        content = page.content.decode()
        assert "Not us — revoke and lock" in content
        assert "<strong>mark</strong> broke glass on <strong>Production DB</strong>" in content
        assert "Revoke and lock mark</button>" in content and 'method="post"' in content
        assert "no-store" in page["Cache-Control"]

    assert state(grant) == UNTOUCHED
    assert has_access(grant.user, grant.group)
    assert not refusals()


# --- the POST -------------------------------------------------------------------------------


def test_the_post_revokes_and_locks_and_tells_everyone(verified_client, grant, member, owner,
                                                       rita, remy):
    holders_client = verified_client(member)
    assert holders_client.get(reverse("breakglass:my-access")).status_code == 200
    client = verified_client(rita)
    path = emailed_link(rita)
    delivered_before = Delivery.objects.count()

    done = client.post(path)

    assert done.status_code == 200
    assert b"Revoked and locked" in done.content
    assert state(grant) == (Grant.Status.REVOKED, False, 1, 1)
    assert (grant.ended_by, grant.ended_at is not None) == (rita, True)
    assert "Not us: rita revoked this access and locked mark" in grant.end_reason
    assert not has_access(member, grant.group)
    [revoked] = AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED)
    assert revoked.data["cause"] == {"abort_link": True}
    [aborted] = AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED)
    assert (aborted.actor_label, aborted.target_id) == ("rita", str(grant.pk))
    assert aborted.data == {"holder": "mark", "grant_ended": True, "account_locked": True,
                            "group": "prod-db"}
    grant.review.refresh_from_db()
    assert grant.review.aborted_at is not None and grant.review.is_open
    use = AbortUse.objects.get()
    assert (use.grant, use.used_by) == (grant, rita)
    assert use.token_digest == hashlib.sha256(token_of(path).encode()).hexdigest()

    # Reviewers, the owners and the holder are told.
    assert Delivery.objects.count() > delivered_before
    told = set(Delivery.objects.filter(event=aborted, channel="email").values_list(
        "recipient", flat=True))
    assert told == {owner.email, rita.email, remy.email, member.email}
    assert set(Delivery.objects.filter(event=aborted, channel="sms").values_list(
        "recipient", flat=True)) == {"+15555550141", "+15555550142"}
    send_due_deliveries()
    assert {m.to[0] for m in mail.outbox if "abort link ended a grant" in m.subject} == {
        owner.email, rita.email, remy.email, member.email}

    # The holder's session is over: their next request is signed out, and so is a new sign-in.
    signed_out = holders_client.get(reverse("breakglass:my-access"))
    assert signed_out.status_code == 302
    assert signed_out["Location"].startswith(reverse("accounts:login"))
    again = Client().post(reverse("accounts:login"), {"username": "mark", "password": PASSWORD},
                          REMOTE_ADDR="192.0.2.10")
    assert again.status_code != 302 or not again["Location"].startswith(
        reverse("accounts:verify"))
    assert "_auth_user_id" not in again.wsgi_request.session


def test_an_owners_link_works_too(verified_client, grant, owner):
    assert verified_client(owner).post(emailed_link(owner)).status_code == 200
    assert state(grant) == (Grant.Status.REVOKED, False, 1, 1)


def test_a_replayed_link_does_nothing_more(verified_client, grant, rita):
    client = verified_client(rita)
    path = emailed_link(rita)
    assert client.post(path).status_code == 200
    after_first = state(grant)
    revoked = AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).count()

    again = client.post(path)

    assert again.status_code == 400
    assert b"This link has already been used." in again.content
    assert b"Nothing was changed" in again.content
    assert state(grant) == after_first == (Grant.Status.REVOKED, False, 1, 1)
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).count() == revoked
    [refused] = refusals()
    assert (refused.actor_label, refused.outcome, refused.reason) == (
        "rita", "denied", "This link has already been used.")
    assert refused.data == {"token": hashlib.sha256(token_of(path).encode()).hexdigest()[:16]}
    looked = client.get(path)  # the confirmation page says so too
    assert looked.status_code == 400 and b"already been used" in looked.content


def test_a_link_used_after_the_grant_ended_still_locks_the_holder(verified_client, grant,
                                                                  owner, rita):
    revoke_grant(grant, actor=owner, reason="done already")
    page = verified_client(rita).post(emailed_link(rita))
    assert page.status_code == 200
    assert state(grant) == (Grant.Status.REVOKED, False, 1, 1)
    assert grant.ended_by == owner  # the first ending stands
    aborted = AuditEvent.objects.get(kind=EventKind.GRANT_ABORTED)
    assert (aborted.data["grant_ended"], aborted.data["account_locked"]) == (False, True)
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).count() == 1


# --- refused links ---------------------------------------------------------------------------


def signed_at(seconds_ago: float, grant: Grant, user: User, monkeypatch) -> str:
    """A genuine link, as abort_token signs it, but `seconds_ago` seconds ago."""
    with monkeypatch.context() as patched:
        patched.setattr(signing, "time", types.SimpleNamespace(
            time=lambda: time.time() - seconds_ago))
        return abort_links.abort_token(grant, user)


def test_an_expired_link_is_refused(verified_client, grant, rita, monkeypatch):
    client = verified_client(rita)
    expired = signed_at(24 * 3600 + 60, grant, rita, monkeypatch)
    fresh_enough = signed_at(23 * 3600, grant, rita, monkeypatch)
    assert abort_links.read(fresh_enough) == (grant.pk, rita.pk)

    for method in (client.get, client.post):
        response = method(reverse("review:abort", args=[expired]))
        assert response.status_code == 400
        assert b"This link has expired" in response.content

    assert state(grant) == UNTOUCHED
    assert [event.reason[:21] for event in refusals()] == ["This link has expired"] * 2
    assert client.post(reverse("review:abort", args=[fresh_enough])).status_code == 200


def forgeries(grant: Grant, user: User, genuine: str) -> list[str]:
    value, signature = genuine.rsplit(":", 1)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    payload = {"g": grant.pk, "u": user.pk, "n": "x"}
    return [
        f"{value}:{flipped}",  # a tampered signature
        genuine[:-3],  # cut short
        signing.dumps(payload, salt="some.other.salt", compress=True),
        signing.dumps(payload, salt=abort_links.SALT, key="another-secret-key-" * 3),
        signing.dumps({"g": grant.pk, "u": user.pk, "n": "x"}, compress=True),  # no salt
        signing.dumps([grant.pk, user.pk], salt=abort_links.SALT),  # signed, but not a link
        signing.dumps({"g": str(grant.pk), "u": user.pk}, salt=abort_links.SALT),
        signing.dumps({"g": grant.pk + 1000, "u": user.pk}, salt=abort_links.SALT),  # no such grant
        "not-a-token",
    ]


def test_forged_links_are_refused(verified_client, grant, rita):
    client = verified_client(rita)
    tokens = forgeries(grant, rita, token_of(emailed_link(rita)))

    for token in tokens:
        for method in (client.get, client.post):
            response = method(reverse("review:abort", args=[token]))
            assert response.status_code == 400, token
            assert b"This link is not valid." in response.content, token

    assert state(grant) == UNTOUCHED
    assert len(refusals()) == 2 * len(tokens)
    assert {event.actor_label for event in refusals()} == {"rita"}


def test_someone_elses_link_is_refused(verified_client, grant, rita, remy, owner):
    ritas = emailed_link(rita)
    for user in (remy, owner):  # a reviewer and an owner, each using rita's link
        client = verified_client(user)
        for method in (client.get, client.post):
            response = method(ritas)
            assert response.status_code == 400
            assert b"This link was sent to someone else: use your own." in response.content
    assert state(grant) == UNTOUCHED
    assert [event.actor_label for event in refusals()] == ["remy"] * 2 + ["olivia"] * 2
    # Borrowing did not spend it: rita's own use still works.
    assert verified_client(rita).post(ritas).status_code == 200
    assert state(grant) == (Grant.Status.REVOKED, False, 1, 1)


def test_strangers_are_refused_even_with_a_link_signed_for_them(verified_client, grant, rita,
                                                                outsider, member):
    own = reverse("review:abort", args=[abort_links.abort_token(grant, outsider)])
    client = verified_client(outsider)
    for path in (own, emailed_link(rita)):
        for method in (client.get, client.post):
            response = method(path)
            assert response.status_code == 400
            assert b"sent to someone else" in response.content
    holders_own = reverse("review:abort", args=[abort_links.abort_token(grant, member)])
    assert verified_client(member).post(holders_own).status_code == 400
    assert state(grant) == UNTOUCHED
    assert len(refusals()) == 5


def test_a_reviewer_who_left_the_role_can_no_longer_use_their_link(verified_client, grant,
                                                                   remy):
    path = emailed_link(remy)
    client = verified_client(remy)
    remy.groups.clear()
    response = client.post(path)
    assert response.status_code == 400 and b"sent to someone else" in response.content
    assert state(grant) == UNTOUCHED


def test_anonymous_visitors_are_sent_to_sign_in(client, grant, rita):
    path = emailed_link(rita)
    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))
    assert state(grant) == UNTOUCHED


def test_the_link_needs_the_csrf_token(verified_client, grant, rita):
    client = verified_client(rita)
    client.handler.enforce_csrf_checks = True
    path = emailed_link(rita)
    assert client.post(path).status_code == 403
    assert state(grant) == UNTOUCHED
    page = client.get(path)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert client.post(path, {"csrfmiddlewaretoken": csrf.group(1)}).status_code == 200
    assert state(grant) == (Grant.Status.REVOKED, False, 1, 1)


# --- generated input --------------------------------------------------------------------------


@pytest.fixture
def rita_client(verified_client, rita):
    return verified_client(rita)  # once per test: a code is accepted once


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.one_of(
    st.text(min_size=1, max_size=300),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:.",
            min_size=1, max_size=200),
    st.from_regex(r"\.?[A-Za-z0-9_-]{5,80}:[A-Za-z0-9_-]{6}:[A-Za-z0-9_-]{20,50}",
                  fullmatch=True),
), post=st.booleans())
def test_generated_tokens_never_cause_a_500(rita_client, grant, token, post):
    path = "/abort/" + quote(token, safe="") + "/"
    response = (rita_client.post if post else rita_client.get)(path)
    assert response.status_code in {400, 404}, (token, response.status_code)
    assert state(grant) == UNTOUCHED

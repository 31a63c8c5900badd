"""django-axes: 5 failures for one username from one client address lock that pair for 30 min."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import override_settings
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def attempt(client, username, password="wrong password", **headers):
    return client.post(
        reverse("accounts:login"), {"username": username, "password": password}, **headers
    )


def fail_five_times(client, username, **headers):
    return [attempt(client, username, **headers).status_code for _ in range(5)]


def test_fifth_failure_locks_the_username_from_that_address(client, member):
    statuses = fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    assert statuses[:4] == [200, 200, 200, 200]
    assert statuses[4] == 429
    locked = attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert locked.status_code == 429
    assert b"Sign-in locked for now" in locked.content


def test_lockout_ends_after_the_cool_off(client, member):
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    assert attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 429
    # Age the recorded failures past the 30-minute cool-off, as the clock would.
    for row in AccessAttempt.objects.all():
        row.attempt_time -= timedelta(minutes=31)
        row.save(update_fields=["attempt_time"])
    response = attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302


def test_lockout_is_still_on_just_before_the_cool_off_ends(client, member):
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    for row in AccessAttempt.objects.all():
        row.attempt_time -= timedelta(minutes=29)
        row.save(update_fields=["attempt_time"])
    assert attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 429


def test_hammering_one_user_does_not_lock_another(client, member, outsider):
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    response = attempt(client, outsider.username, PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302


def test_the_same_user_from_another_address_is_not_locked(client, member):
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    response = attempt(client, member.username, PASSWORD, REMOTE_ADDR="203.0.113.50")
    assert response.status_code == 302


def test_forged_forwarded_for_is_ignored_without_a_trusted_proxy(client, member):
    for n in range(5):
        attempt(client, member.username, REMOTE_ADDR="198.51.100.7",
                HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    response = attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7",
                       HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == 429


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_forged_forwarded_for_behind_one_proxy_cannot_escape_the_lock(client, member):
    """The proxy appends the real client address; whatever the client wrote before it is
    ignored, so rotating the forged part does not give fresh attempts."""
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for n in range(5):
        attempt(client, member.username, HTTP_X_FORWARDED_FOR=f"1.1.1.{n}, 203.0.113.9", **proxy)
    response = attempt(client, member.username, PASSWORD,
                       HTTP_X_FORWARDED_FOR="8.8.8.8, 203.0.113.9", **proxy)
    assert response.status_code == 429
    # Another real client behind the same proxy is unaffected.
    other = attempt(client, member.username, PASSWORD,
                    HTTP_X_FORWARDED_FOR="203.0.113.10", **proxy)
    assert other.status_code == 302


def test_a_successful_sign_in_resets_the_failure_count(client, member):
    for _ in range(4):
        attempt(client, member.username, REMOTE_ADDR="198.51.100.7")
    assert attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302
    client.post(reverse("accounts:logout"))
    for _ in range(4):
        assert attempt(client, member.username, REMOTE_ADDR="198.51.100.7").status_code == 200

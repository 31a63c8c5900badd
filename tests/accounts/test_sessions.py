"""Idle (15 min) and absolute (12 h) limits for users with break-glass rights."""

import time

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def age_session(client, *, idle_seconds=0, signed_in_seconds=0):
    session = client.session
    now = time.time()
    session["seen_at"] = now - idle_seconds
    session["signed_in_at"] = now - signed_in_seconds
    session.save()


def test_reviewer_is_signed_out_after_15_idle_minutes(verified_client, reviewer):
    client = verified_client(reviewer)
    age_session(client, idle_seconds=15 * 60 + 5)
    response = client.get(reverse("accounts:security"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
    assert "_auth_user_id" not in client.session


def test_reviewer_active_within_15_minutes_stays_signed_in(verified_client, reviewer):
    client = verified_client(reviewer)
    age_session(client, idle_seconds=14 * 60)
    assert client.get(reverse("accounts:security")).status_code == 200


def test_admin_is_signed_out_after_12_hours_even_when_active(verified_client, admin_user):
    client = verified_client(admin_user)
    age_session(client, idle_seconds=10, signed_in_seconds=12 * 3600 + 5)
    response = client.get(reverse("accounts:security"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_plain_member_is_not_held_to_the_idle_limit(verified_client, member):
    client = verified_client(member)
    age_session(client, idle_seconds=60 * 60)
    assert client.get(reverse("accounts:security")).status_code == 200


def test_activity_moves_the_idle_clock(verified_client, reviewer):
    client = verified_client(reviewer)
    age_session(client, idle_seconds=10 * 60)
    assert client.get(reverse("accounts:security")).status_code == 200
    assert time.time() - client.session["seen_at"] < 5

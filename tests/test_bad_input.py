"""Garbage into the sign-in forms (QUALITY Q37): clear 4xx or a re-rendered form, never a 500."""

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD, add_authenticator

pytestmark = pytest.mark.django_db

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)
FIELDS = st.dictionaries(
    st.sampled_from(["username", "password", "code", "next", "otp_token", "x"]),
    st.one_of(ANY_TEXT, st.lists(ANY_TEXT, max_size=3)),
    max_size=5,
)
NO_DB_RESET = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=NO_DB_RESET)
@given(data=FIELDS)
def test_login_survives_generated_input(client, data):
    response = client.post(reverse("accounts:login"), data)
    assert response.status_code in {200, 302, 400, 429}


@settings(max_examples=60, deadline=None, suppress_health_check=NO_DB_RESET)
@given(data=FIELDS)
def test_second_factor_form_survives_generated_input(member, data):
    add_authenticator(member) if not member.totpdevice_set.exists() else None
    client = Client()
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    response = client.post(reverse("accounts:verify"), data)
    assert response.status_code in {200, 302, 400, 429}


@pytest.mark.parametrize(
    "body",
    [
        b"username=\xff\xfe\xfd&password=\xc3\x28",
        b"username=%FF%FE&password=%C3%28",
        b"username=a%00b&password=x",
        b"username=" + b"a" * 5000 + b"&password=x",
        b"password=" + b"p" * 5000 + b"&username=u",
        b"&&&==&=&username",
    ],
)
def test_odd_bodies_get_a_form_error_not_a_500(client, body):
    response = client.post(
        reverse("accounts:login"), body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in {200, 400}


def test_an_oversized_body_is_refused_with_400(client):
    body = b"username=u&password=" + b"p" * (2 * 1024 * 1024)
    response = client.post(
        reverse("accounts:login"), body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400


def test_too_many_fields_are_refused_with_400(client):
    body = "&".join(f"f{i}=x" for i in range(500)).encode()
    response = client.post(
        reverse("accounts:login"), body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400


def test_a_null_byte_in_the_username_is_a_form_error(client):
    response = client.post(reverse("accounts:login"), {"username": "a\x00b", "password": "x"})
    assert response.status_code == 200
    assert b"Null characters are not allowed" in response.content

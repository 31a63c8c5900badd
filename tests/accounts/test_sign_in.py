import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from tests.conftest import PASSWORD, add_authenticator, current_totp

pytestmark = pytest.mark.django_db


def test_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(reverse("accounts:security"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next=/accounts/"


def test_login_page_renders_with_both_fields(client):
    response = client.get(reverse("accounts:login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


def test_password_alone_reaches_only_the_second_factor_step(client, member):
    add_authenticator(member)
    response = client.post(
        reverse("accounts:login"), {"username": member.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    response = client.get(reverse("accounts:security"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:verify"))


def test_password_and_authenticator_code_reach_the_account_page(client, member):
    device = add_authenticator(member)
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    response = client.post(
        reverse("accounts:verify") + "?next=/accounts/", {"code": current_totp(device)}
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/"
    response = client.get("/accounts/")
    assert response.status_code == 200
    assert b"Your account" in response.content


def test_wrong_password_is_refused_with_a_clear_message(client, member):
    response = client.post(
        reverse("accounts:login"), {"username": member.username, "password": "wrong"}
    )
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert SESSION_KEY not in client.session


def test_wrong_code_is_refused_and_the_user_stays_unverified(client, member):
    add_authenticator(member)
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    response = client.post(reverse("accounts:verify"), {"code": "000000"})
    assert response.status_code in {400, 429}
    assert client.get(reverse("accounts:security")).status_code == 302


def test_session_key_rotates_at_login_and_at_verification(client, member):
    device = add_authenticator(member)
    client.get(reverse("accounts:login"))
    client.session.save()
    anonymous_key = client.session.session_key
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    password_key = client.session.session_key
    client.post(reverse("accounts:verify"), {"code": current_totp(device)})
    verified_key = client.session.session_key
    assert len({anonymous_key, password_key, verified_key}) == 3


def test_open_redirect_through_next_is_refused(client, member):
    device = add_authenticator(member)
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    response = client.post(
        reverse("accounts:verify") + "?next=https://evil.example/", {"code": current_totp(device)}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_logout_is_post_only_and_kills_the_server_side_session(verified_client, member):
    client = verified_client(member)
    session_key = client.session.session_key
    assert client.get(reverse("accounts:logout")).status_code == 405
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    from django.contrib.sessions.models import Session

    assert not Session.objects.filter(session_key=session_key).exists()
    assert client.get(reverse("accounts:security")).status_code == 302


def test_home_sends_a_verified_user_to_the_catalog(verified_client, member):
    response = verified_client(member).get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("breakglass:catalog")

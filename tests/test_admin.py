"""The admin is an OTPAdminSite: staff without a verified second factor see nothing."""

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD, current_totp

pytestmark = pytest.mark.django_db


def test_staff_with_a_password_only_is_sent_to_the_second_factor(client, admin_user):
    client.post(reverse("accounts:login"), {"username": admin_user.username, "password": PASSWORD})
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:verify"))
    response = client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 302
    assert b"ada" not in response.content


def test_staff_without_any_device_is_sent_to_enrolment_not_the_admin(client, db):
    from tests.conftest import make_user

    staff = make_user("stan", is_staff=True, is_superuser=True)
    client.post(reverse("accounts:login"), {"username": staff.username, "password": PASSWORD})
    response = client.get(reverse("admin:index"))
    assert response["Location"].startswith(reverse("accounts:two-factor"))


def test_the_admin_refuses_a_session_not_verified_by_otp(client, admin_user):
    """Even past the middleware, OTPAdminSite itself refuses a user who is not verified."""
    from django.contrib.admin import site
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = admin_user
    request.user.is_verified = lambda: False
    assert site.has_permission(request) is False
    request.user.is_verified = lambda: True
    assert site.has_permission(request) is True


def test_staff_verified_by_otp_reaches_the_admin(client, admin_user):
    client.post(reverse("accounts:login"), {"username": admin_user.username, "password": PASSWORD})
    device = admin_user.totpdevice_set.get()
    client.post(reverse("accounts:verify"), {"code": current_totp(device)})
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert b"Breakglass administration" in response.content


def test_the_admin_login_page_leads_to_the_one_sign_in_flow(client):
    response = client.get(reverse("admin:login") + "?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next=/admin/"


def test_admin_user_form_stores_mobile_numbers_in_e164(verified_client, admin_user, member):
    client = verified_client(admin_user)
    url = reverse("admin:accounts_user_change", args=[member.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update({"mobile": "+44 7700 900123", "date_joined_0": "2026-01-01",
                 "date_joined_1": "00:00:00", "groups": [], "user_permissions": []})
    data.pop("date_joined", None)
    data.pop("last_login", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert member.mobile == "+447700900123"

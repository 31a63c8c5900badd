"""An administrator chooses, in the admin, who keeps the local break-glass login, and can
link an account made by hand to its identity at the provider; emptying the link unlinks it."""

import pytest
from django.urls import reverse

from tests.conftest import make_user, sign_in

pytestmark = pytest.mark.django_db


def change(client, user, **fields):
    url = reverse("admin:accounts_user_change", args=[user.pk])
    form = {"username": user.username, "first_name": "", "last_name": "", "email": user.email,
            "mobile": "", "is_active": "on", "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00", **fields}
    return client.post(url, form)


def test_an_administrator_marks_the_local_login_and_links_an_identity(client):
    admin = make_user("root", is_staff=True, is_superuser=True, may_use_local_login=True)
    sign_in(client, admin)
    dave, erin = make_user("dave"), make_user("erin")
    page = client.get(reverse("admin:accounts_user_change", args=[dave.pk])).content.decode()
    page = page.lower()
    assert "may use the local login" in page and "identity provider subject" in page

    assert change(client, dave, may_use_local_login="on", sso_subject="00u-dave").status_code == 302
    dave.refresh_from_db()
    assert dave.may_use_local_login and dave.sso_subject == "00u-dave"
    assert dave.history.first().may_use_local_login

    # Two accounts without a link: both stay unlinked (none, not an empty text twice).
    assert change(client, dave, sso_subject="").status_code == 302
    assert change(client, erin, sso_subject="").status_code == 302
    dave.refresh_from_db()
    erin.refresh_from_db()
    assert dave.sso_subject is None and erin.sso_subject is None
    assert not dave.may_use_local_login

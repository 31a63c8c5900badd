import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_scratch(verified_client, admin_user):
    client = verified_client(admin_user)
    page = client.get(reverse("admin:risk_riskrule_changelist"))
    html = page.content.decode()
    print(page.status_code)
    print(sorted(set(re.findall(r'name="([^"]+)"', html)))[:60])
    print(re.findall(r'<input[^>]*name="form-0-[^"]*"[^>]*>', html))
    print(re.findall(r'<input[^>]*name="form-(?:TOTAL|INITIAL|MIN|MAX)[^"]*"[^>]*>', html))
    add = client.get(reverse("admin:risk_incident_add"))
    print(add.status_code, sorted(set(re.findall(r'name="([^"]+)"', add.content.decode()))))

"""Security baseline (QUALITY Q36): headers on every page, production refuses unsafe settings,
and `check --deploy --fail-level WARNING` passes under production settings."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def production_env(**overrides) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"DJANGO_SETTINGS_MODULE", "DEBUG", "ENVIRONMENT", "SECRET_KEY",
                "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        AUDIT_HMAC_KEY=secrets.token_urlsafe(32),
        FIELD_ENCRYPTION_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        EMAIL_URL="smtp+tls://breakglass:secret@smtp.example.com:587",
        ALLOWED_HOSTS="breakglass.example.com",
        TRUSTED_PROXY_COUNT="1",
    )
    env.update(overrides)
    return env


def manage(*args, **overrides) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=production_env(**overrides), capture_output=True, text=True, timeout=120,
    )


def test_deploy_check_passes_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEBUG": "true"}, "DEBUG must be off"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is missing"),
        ({"SECRET_KEY": "insecure-development-key-never-use-in-production"}, "SECRET_KEY is"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is"),
        ({"AUDIT_HMAC_KEY": ""}, "AUDIT_HMAC_KEY is missing"),
        ({"AUDIT_HMAC_KEY": "too-short"}, "AUDIT_HMAC_KEY is missing"),
        ({"FIELD_ENCRYPTION_KEY": ""}, "FIELD_ENCRYPTION_KEY is missing"),
        ({"FIELD_ENCRYPTION_KEY": "not-a-key"}, "FIELD_ENCRYPTION_KEY is missing"),
    ],
)
def test_production_refuses_to_start_with_unsafe_settings(overrides, message):
    result = manage("check", **overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_page_carries_the_security_headers(client):
    response = client.get(reverse("accounts:login"))
    csp = response["Content-Security-Policy"]
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_hsts_and_secure_cookies_are_on_in_production(settings):
    result = manage(
        "shell", "--verbosity", "0", "-c",
        "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "s.SECURE_SSL_REDIRECT)",
    )
    assert result.stdout.split() == ["31536000", "True", "True", "True", "True"], result.stderr


def test_post_without_csrf_token_is_refused(member):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("accounts:login"), {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert b"This form has expired" in response.content


def test_production_settings_load_in_an_account_without_a_home():
    """Some containers run the app under a uid with no home and no passwd entry, where
    Path.home() raises: production needs no home folder at all."""
    script = ("import pathlib\n"
              "def no_home(cls=None): raise RuntimeError('Could not determine home directory.')\n"
              "pathlib.Path.home = classmethod(no_home)\n"
              "import django; django.setup()\n"
              "from django.conf import settings; print(settings.BACKUP_SOURCE_ROOTS)\n")
    env = production_env()
    env.pop("HOME", None)
    env.pop("XDG_DATA_HOME", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

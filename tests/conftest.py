"""The cast and the sign-in helpers shared by every test.

Like healthchecks' Alice, Bob and Charlie: a group owner, a member, an outsider, a security
reviewer and an administrator; and what several apps' tests start from: the prod-db group,
the example.org website, the recovery holders. Factories build only initial states (a user, a
confirmed authenticator); everything later is reached through the real pages and services.
"""

import os

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp

from accounts.models import SECURITY_REVIEWERS_GROUP, TOTPDevice, User
from backups.models import Website
from breakglass.models import Group

# Playwright's sync API runs an event loop in the test thread; Django must be told that the
# ORM calls made beside it are safe (the live server runs in its own thread).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "correct horse battery staple"


def make_user(username: str, **fields) -> User:
    user = User.objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD, **fields
    )
    return user


def add_authenticator(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def current_totp(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code the authenticator shows now, or `steps_ahead` steps later: a fresh code after
    one was used (the device's tolerance accepts the next step's).

    django-otp learns a clock drift at each accepted code (OTP_TOTP_SYNC): a code typed in one
    step and checked in the next leaves the device centred one step back, and the next step's
    code would then fall outside its tolerance. The code is taken around that centre, as a
    real authenticator's would be after the server adjusted to it."""
    learned_drift = 0
    if device.pk is not None:
        learned_drift = TOTPDevice.objects.filter(pk=device.pk).values_list(
            "drift", flat=True).first() or 0
    token = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits,
                 drift=learned_drift + steps_ahead)
    return f"{token:0{device.digits}d}"


def sign_in(client: Client, user: User) -> Client:
    """Sign `user` in through the real pages: password, then a code from their authenticator."""
    device = (TOTPDevice.objects.filter(user=user, confirmed=True).first()
              or add_authenticator(user))
    response = client.post(
        reverse("accounts:login"),
        {"username": user.username, "password": PASSWORD},
        REMOTE_ADDR="192.0.2.10",
    )
    assert response.status_code == 302, response.content[:500]
    response = client.post(reverse("accounts:verify"), {"code": current_totp(device)})
    assert response.status_code == 302, response.content[:500]
    return client


@pytest.fixture
def owner(db) -> User:
    return make_user("olivia")


@pytest.fixture
def member(db) -> User:
    return make_user("mark")


@pytest.fixture
def outsider(db) -> User:
    return make_user("oscar")


@pytest.fixture
def reviewer(db) -> User:
    user = make_user("rita")
    user.groups.add(AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    return user


@pytest.fixture
def admin_user(db) -> User:
    user = make_user("ada", is_staff=True, is_superuser=True)
    add_authenticator(user)
    return user


@pytest.fixture
def database(owner, member) -> Group:
    """Production DB (prod-db) with every default (medium sensitivity, the deployment's
    12-hour grants): olivia owns it, mark may break glass on it."""
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.owners.add(owner)
    group.break_glass_users.add(member)
    return group


def example_website(manager: User, **fields) -> Website:
    """example.org as its manager set it up earlier: confirmed, contacts preset, emergency
    access on (`fields` add to that or change it)."""
    fields = {"verification_email": "owner@example.org", "verification_mobile": "+15555550100",
              "emergency_enabled": True, **fields}
    return Website.objects.create(name="Example", address="example.org", manager=manager,
                                  **fields)


# The recovery cast: tests/recovery/helpers.py builds on this module's helpers, hence the
# imports inside the fixtures.
@pytest.fixture
def pair(db) -> list[User]:
    """alice and bob, each with an authenticator and a recovery passphrase."""
    from tests.recovery.helpers import enrolled

    return enrolled("alice", "bob")


@pytest.fixture
def trio(db) -> list[User]:
    """alice, bob and erin, each with an authenticator and a recovery passphrase."""
    from tests.recovery.helpers import enrolled_trio

    return enrolled_trio()


@pytest.fixture
def backup_sources(settings, tmp_path):
    """Lets the emergency backup read files and SQLite databases under `tmp_path` (the
    operator's BACKUP_SOURCE_ROOTS and BACKUP_DATABASE_ALLOW); returns that root."""
    settings.BACKUP_SOURCE_ROOTS = [str(tmp_path)]
    settings.BACKUP_DATABASE_ALLOW = [str(tmp_path)]
    return tmp_path


@pytest.fixture(scope="session")
def _demo_sites_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-sites")


@pytest.fixture(autouse=True)
def _demo_sites_out_of_the_home_folder(settings, _demo_sites_folder):
    """seed_demo writes the demo website under DEMO_SITES_DIR: a scratch folder in tests."""
    settings.DEMO_SITES_DIR = _demo_sites_folder


@pytest.fixture
def verified_client(client):
    """Returns a function that signs a user in fully (password + OTP) on a fresh client."""

    def _sign_in(user: User) -> Client:
        return sign_in(Client(), user)

    return _sign_in


@pytest.fixture(autouse=True)
def _required_resources(request):
    """Tests marked `postgres` or `browser` skip with a printed reason on a developer machine,
    and fail in CI (BREAKGLASS_REQUIRE_POSTGRES / BREAKGLASS_REQUIRE_BROWSER) instead."""
    if request.node.get_closest_marker("postgres"):
        from django.db import connection

        if connection.vendor != "postgresql":
            reason = "needs PostgreSQL: set DATABASE_URL=postgres://... (always run in CI)"
            if os.environ.get("BREAKGLASS_REQUIRE_POSTGRES"):
                pytest.fail(f"BREAKGLASS_REQUIRE_POSTGRES is set but {reason}")
            pytest.skip(reason)
    if request.node.get_closest_marker("browser"):
        require_chromium()


@pytest.fixture(autouse=True)
def _relay_connections_closed():
    """Connector targets the relay keeps open between deliveries end with the test, like a
    worker's end closes them."""
    yield
    from breakglass.services.connectors import close_relay_targets

    close_relay_targets()


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Per-address throttles count in Django's cache, which outlives a test's database: every
    test starts with none of another test's requests counted."""
    from django.core.cache import cache

    cache.clear()


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        reason = f"needs Chromium at {CHROMIUM} (apt-get install chromium; always run in CI)"
        if os.environ.get("BREAKGLASS_REQUIRE_BROWSER"):
            pytest.fail(f"BREAKGLASS_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _audit_triggers_out_of_the_way_of_flush(request):
    """After a transactional test the tables are emptied (SQLite: DELETE, PostgreSQL:
    TRUNCATE), which the append-only triggers refuse. Drop them just before that flush, as
    only the tables' owner can; post_migrate puts them back after it."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "live_server" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    from audit import triggers

    triggers.remove(connection)


# Debian's Chromium, headless, with every background connection off: the machines have no
# internet, and Chromium's own attempts would otherwise be refused many times at start-up.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()

"""Authenticator (TOTP) seeds are stored only encrypted under FIELD_ENCRYPTION_KEY: no table
of the database holds a seed in any spelling, sign-in and the admin still work, and
`reencrypt_fields` moves the seeds to a new key."""

import re
from base64 import b32decode, b32encode
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django_otp.oath import totp

from recovery.crypto import generate_field_key
from tests.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"enc1:([0-9a-f]{8}):")


def database_dump() -> str:
    """Every row of every table, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            # Table names come from the database itself, quoted.
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            rows.append(repr(cursor.fetchall()))
    return "\n".join(rows)


def spellings(seed: bytes) -> list[str]:
    base32 = b32encode(seed).decode()
    return [seed.hex(), seed.hex().upper(), base32, base32.rstrip("="), base32.lower()]


def code(seed: bytes, steps_ahead: int = 0) -> str:
    return f"{totp(seed, step=30, t0=0, digits=6, drift=steps_ahead):06d}"


def enrol(client, user) -> bytes:
    """Password, then the enrolment page: returns the seed the page shows for the app."""
    client.post(reverse("accounts:login"), {"username": user.username, "password": PASSWORD})
    page = client.get(reverse("accounts:two-factor"))
    seed = b32decode("".join(page.context["secret_groups"]))
    response = client.post(reverse("accounts:two-factor"), {"code": code(seed)})
    assert response.status_code == 200 and len(response.context["codes"]) == 10
    client.post(reverse("accounts:logout"))
    return seed


def signs_in(client, user, seed: bytes, steps_ahead: int) -> bool:
    client.post(reverse("accounts:login"), {"username": user.username, "password": PASSWORD})
    response = client.post(reverse("accounts:verify"), {"code": code(seed, steps_ahead)})
    verified = response.status_code == 302 and client.get(
        reverse("accounts:security")).status_code == 200
    client.post(reverse("accounts:logout"))
    return verified


def test_an_enrolled_seed_is_nowhere_in_the_database(client, member):
    seed = enrol(client, member)
    dump = database_dump()
    for spelling in spellings(seed):
        assert spelling not in dump
    assert TOKEN.search(dump), "the seed is stored as an encrypted field"
    assert signs_in(client, member, seed, steps_ahead=1)


def test_admin_sign_in_with_an_encrypted_seed_reaches_the_admin(client, admin_user):
    client = sign_in(client, admin_user)
    assert client.get(reverse("admin:index")).status_code == 200
    dump = database_dump()
    from accounts.models import TOTPDevice

    seed = TOTPDevice.objects.get(user=admin_user).bin_key
    assert not any(spelling in dump for spelling in spellings(seed))


def test_reencrypt_fields_moves_seeds_to_the_new_key(client, member, settings):
    old_key, new_key = generate_field_key(), generate_field_key()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    seed = enrol(client, member)
    (old_id,) = set(TOKEN.findall(database_dump()))

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = StringIO()
    call_command("reencrypt_fields", stdout=out)
    assert "1 row(s) re-encrypted" in out.getvalue()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]

    key_ids = set(TOKEN.findall(database_dump()))
    assert old_id not in key_ids and len(key_ids) == 1
    assert signs_in(client, member, seed, steps_ahead=1)


# django-otp's TOTPDevice table as an earlier Breakglass left it.
LEGACY_TABLE = """CREATE TABLE otp_totp_totpdevice (
    id integer PRIMARY KEY, user_id bigint NOT NULL, name varchar(64) NOT NULL,
    confirmed boolean NOT NULL, key varchar(80) NOT NULL, step smallint NOT NULL,
    t0 bigint NOT NULL, digits smallint NOT NULL, tolerance smallint NOT NULL,
    drift smallint NOT NULL, last_t bigint NOT NULL, created_at timestamp NULL,
    last_used_at timestamp NULL, throttling_failure_timestamp timestamp NULL,
    throttling_failure_count integer NOT NULL DEFAULT 0)"""


def test_the_migration_moves_plaintext_seeds_and_leaves_none_behind(member):
    """A database enrolled before seeds were encrypted: the migration copies each seed into
    the encrypted device and deletes the plaintext row."""
    from importlib import import_module

    from django.apps import apps

    from accounts.models import TOTPDevice

    migration = import_module("accounts.migrations.0002_encrypted_totp")
    seed = bytes(range(20))
    with connection.cursor() as cursor:
        cursor.execute(LEGACY_TABLE)
        cursor.execute(
            "INSERT INTO otp_totp_totpdevice (id, user_id, name, confirmed, key, step, t0,"
            " digits, tolerance, drift, last_t) VALUES (7, %s, 'Phone', %s, %s, 30, 0, 6, 1, 0,"
            " -1)",
            [member.pk, True, seed.hex()])
    # The function reads only the editor's connection (SQLite refuses a real schema editor
    # inside the test's transaction).
    migration.move_plaintext_seeds(apps, SimpleNamespace(connection=connection))

    device = TOTPDevice.objects.get(user=member)
    assert (device.bin_key, device.name, device.confirmed) == (seed, "Phone", True)
    assert "otp_totp_totpdevice" not in connection.introspection.table_names()
    dump = database_dump()
    assert not any(spelling in dump for spelling in spellings(seed))

"""`reencrypt_fields` moves every encrypted field to the first FIELD_ENCRYPTION_KEY, so that the
old key can be dropped: the webhook endpoints' current and previous secrets and the connectors'
server URLs and bind credentials included, and no model's encrypted field forgotten."""

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command

from audit.models import WebhookEndpoint
from audit.webhooks import create_webhook_endpoint, rotate_webhook_secret, signing_secrets
from breakglass.models import Connector, Group
from recovery import crypto
from recovery.management.commands.reencrypt_fields import ENCRYPTED_FIELDS

pytestmark = pytest.mark.django_db

SERVER_URL = "postgres://provisioner:pw-for-the-test@127.0.0.1:5432/app"


def reencrypt() -> str:
    out = StringIO()
    call_command("reencrypt_fields", stdout=out)
    return out.getvalue()


def stored_under_an_old_key() -> list[str]:
    """label.field of every stored value not under the first key."""
    found = []
    for label, fields in ENCRYPTED_FIELDS.items():
        for row in apps.get_model(label)._base_manager.values(*fields):
            found += [f"{label}.{field}" for field, value in row.items()
                      if value and crypto.needs_reencryption(value)]
    return found


def test_every_field_named_encrypted_is_listed_and_every_listed_field_exists():
    listed = {(label, field) for label, fields in ENCRYPTED_FIELDS.items() for field in fields}
    named = {(model._meta.label, field.name) for model in apps.get_models()
             for field in model._meta.concrete_fields
             if field.name.endswith("_encrypted") or field.name.startswith("encrypted_")}
    assert named - listed == set()
    for label, field in listed:
        apps.get_model(label)._meta.get_field(field)  # raises when a listed field is gone


def test_rotating_the_key_reencrypts_webhook_and_connector_secrets(settings):
    old_keys, new_key = list(settings.FIELD_ENCRYPTION_KEYS), crypto.generate_field_key()
    endpoint = WebhookEndpoint(name="soc", url="https://soc.example/hooks")
    previous = create_webhook_endpoint(endpoint, actor=None)
    current = rotate_webhook_secret(endpoint, actor=None)
    group = Group.objects.create(name="Production DB", slug="prod-db")
    connector = Connector.objects.create(
        name="prod-role", group=group, kind=Connector.Kind.POSTGRES_ROLE, target_name="dba",
        server_url_encrypted=crypto.encrypt_field(SERVER_URL),
        bind_dn_encrypted=crypto.encrypt_field("cn=admin"),
        bind_password_encrypted=crypto.encrypt_field("bind-pw"))
    assert stored_under_an_old_key() == []  # the key they were written with is still first

    settings.FIELD_ENCRYPTION_KEYS = [new_key, *old_keys]
    moving = stored_under_an_old_key()
    assert {"audit.WebhookEndpoint.secret_encrypted",
            "audit.WebhookEndpoint.previous_secret_encrypted",
            "breakglass.Connector.server_url_encrypted", "breakglass.Connector.bind_dn_encrypted",
            "breakglass.Connector.bind_password_encrypted"} <= set(moving)
    assert reencrypt() == "2 row(s) re-encrypted with the current key.\n"
    assert stored_under_an_old_key() == []
    assert reencrypt() == "0 row(s) re-encrypted with the current key.\n"

    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    endpoint.refresh_from_db()
    connector.refresh_from_db()
    assert signing_secrets(endpoint, endpoint.secret_rotated_at) == [current, previous]
    assert [crypto.decrypt_field(token) for token in (
        connector.server_url_encrypted, connector.bind_dn_encrypted,
        connector.bind_password_encrypted)] == [SERVER_URL, "cn=admin", "bind-pw"]

"""Alert webhooks signed per Standard Webhooks (https://www.standardwebhooks.com/).

Each delivery carries `webhook-id` (the same on every retry of that delivery, so a receiver can
drop a repeat), `webhook-timestamp` (the time of this attempt) and `webhook-signature`: one
`v1,<base64 HMAC-SHA256>` per secret in force, so that during a rotation a receiver holding
either the new or the previous secret verifies. A receiver checks them with
`standardwebhooks.Webhook(secret).verify(body, headers)`, which also refuses a timestamp more
than five minutes away, and remembers the ids it saw for that long.

Endpoints are WebhookEndpoint rows (the admin), each with its own secret, plus the one from the
environment (ALERT_WEBHOOK_URL and ALERT_WEBHOOK_SECRET), recipient "alert-webhook"."""

import base64
import binascii
import hashlib
import ipaddress
import secrets
from datetime import datetime
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from standardwebhooks import Webhook

from audit.catalogue import EventKind
from audit.models import WebhookEndpoint
from audit.services import record
from recovery.crypto import decrypt_field, encrypt_field

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's marker, not a secret)
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64
ENVIRONMENT_RECIPIENT = "alert-webhook"
RECIPIENT_PREFIX = "webhook:"
MAX_URL_LENGTH = 500
EDITABLE_FIELDS = ("name", "url", "enabled", "event_kinds")


class InvalidEndpoint(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class EndpointUnavailable(Exception):
    """The delivery's endpoint is gone, disabled or misconfigured: retrying cannot help."""


class Destination(NamedTuple):
    url: str
    secrets: list[str]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def is_secret(value: str) -> bool:
    if not value.startswith(SECRET_PREFIX):
        return False
    try:
        decoded = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(decoded) <= 64


def check_url(url: str) -> str:
    """The URL if alerts may go there: https, or http to the loopback outside production
    (the rule config/settings.py applies to ALERT_WEBHOOK_URL)."""
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH or not parts.hostname:
        raise InvalidEndpoint("url", f"give the receiver's https:// address ({MAX_URL_LENGTH} "
                                     "characters at most)")
    if parts.username or parts.password:
        raise InvalidEndpoint("url", "no user:password in the address: the signature is the "
                                     "receiver's proof that Breakglass sent the request")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and not settings.PRODUCTION and _is_loopback(parts.hostname):
        return url
    raise InvalidEndpoint("url", "the address must start with https:// (plain http:// only to "
                                 "127.0.0.1 or localhost, and never in production)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_event_kinds(kinds) -> list[str]:
    unknown = sorted(set(kinds) - set(EventKind.values))
    if unknown:
        raise InvalidEndpoint("event_kinds", f"unknown event kind {unknown[0]!r}")
    return sorted(set(kinds))


def _checked(fields: dict) -> dict:
    name = (fields.get("name") or "").strip()
    if not name or len(name) > 100:
        raise InvalidEndpoint("name", "give the endpoint a name (100 characters at most)")
    return {"name": name, "url": check_url(fields.get("url") or ""),
            "enabled": bool(fields.get("enabled", True)),
            "event_kinds": check_event_kinds(fields.get("event_kinds") or [])}


@transaction.atomic
def create_webhook_endpoint(endpoint: WebhookEndpoint, *, actor,
                            request: HttpRequest | None = None) -> str:
    """Save a new endpoint (its editable fields set by the caller) with a new signing secret,
    audited; returns the secret, which is stored encrypted and never shown again."""
    for field, value in _checked({f: getattr(endpoint, f) for f in EDITABLE_FIELDS}).items():
        setattr(endpoint, field, value)
    secret = new_secret()
    endpoint.secret_encrypted = encrypt_field(secret)
    endpoint.save()
    record(EventKind.WEBHOOK_ENDPOINT_CHANGED, actor=actor, target=endpoint, request=request,
           data={"endpoint": endpoint.name, "action": "created", "enabled": endpoint.enabled,
                 "event_kinds": endpoint.event_kinds})
    return secret


@transaction.atomic
def change_webhook_endpoint(endpoint: WebhookEndpoint, *, changes: dict, actor,
                            request: HttpRequest | None = None) -> WebhookEndpoint:
    """Change an endpoint's name, URL, kinds or enabled flag, audited ("changed", "disabled"
    or "enabled"); a change to nothing records nothing. A disabled endpoint's queued
    deliveries are dead-lettered when their turn comes."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    wanted = _checked({**{f: getattr(endpoint, f) for f in EDITABLE_FIELDS}, **changes})
    changed = [field for field in EDITABLE_FIELDS if getattr(endpoint, field) != wanted[field]]
    if not changed:
        return endpoint
    for field in changed:
        setattr(endpoint, field, wanted[field])
    endpoint.save(update_fields=changed)
    action = "changed"
    if changed == ["enabled"]:
        action = "enabled" if endpoint.enabled else "disabled"
    # Field names, not the URL itself: an address may carry a token in its path.
    record(EventKind.WEBHOOK_ENDPOINT_CHANGED, actor=actor, target=endpoint, request=request,
           data={"endpoint": endpoint.name, "action": action, "changed": changed,
                 "enabled": endpoint.enabled, "event_kinds": endpoint.event_kinds})
    return endpoint


@transaction.atomic
def rotate_webhook_secret(endpoint: WebhookEndpoint, *, actor,
                          request: HttpRequest | None = None) -> str:
    """Give an endpoint a new signing secret and keep the current one signing next to it for
    WEBHOOK_ROTATION_OVERLAP; returns the new secret (shown once). A secret still in an
    earlier overlap stops signing at once: only the last two are ever in force."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    secret = new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + settings.WEBHOOK_ROTATION_OVERLAP
    endpoint.secret_encrypted = encrypt_field(secret)
    endpoint.secret_rotated_at = now
    endpoint.save(update_fields=["secret_encrypted", "previous_secret_encrypted",
                                 "previous_secret_expires_at", "secret_rotated_at"])
    record(EventKind.WEBHOOK_ENDPOINT_CHANGED, actor=actor, target=endpoint, request=request,
           data={"endpoint": endpoint.name, "action": "rotated",
                 "previous_secret_valid_until": endpoint.previous_secret_expires_at.isoformat()})
    return secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets in force: the current one, and the previous one until its overlap ends."""
    in_force = [decrypt_field(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at and (
            now < endpoint.previous_secret_expires_at):
        in_force.append(decrypt_field(endpoint.previous_secret_encrypted))
    return in_force


def destination(recipient: str, now: datetime) -> Destination:
    """Where a delivery to `recipient` goes and the secrets that sign it, read at send time.
    Raises EndpointUnavailable when it cannot be sent."""
    if recipient == ENVIRONMENT_RECIPIENT:
        url, secret = settings.ALERT_WEBHOOK_URL, settings.ALERT_WEBHOOK_SECRET
        if not url:
            raise EndpointUnavailable("ALERT_WEBHOOK_URL is not set")
        if not is_secret(secret):
            raise EndpointUnavailable("ALERT_WEBHOOK_SECRET is not a whsec_ secret")
        return Destination(url, [secret])
    pk = recipient.removeprefix(RECIPIENT_PREFIX)
    endpoint = WebhookEndpoint.objects.filter(pk=int(pk)).first() if pk.isdigit() else None
    if endpoint is None:
        raise EndpointUnavailable(f"webhook endpoint {pk} no longer exists")
    if not endpoint.enabled:
        raise EndpointUnavailable(f"webhook endpoint {endpoint.name!r} is disabled")
    try:
        check_url(endpoint.url)
    except InvalidEndpoint as invalid:
        raise EndpointUnavailable(f"webhook endpoint {endpoint.name!r}: {invalid}") from None
    return Destination(endpoint.url, signing_secrets(endpoint, now))


def message_id(idempotency_key: str) -> str:
    """The delivery's webhook-id: derived from its idempotency key, so every retry of the
    delivery (by any relay) carries the same id, and no two deliveries share one."""
    return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def signature_headers(msg_id: str, at: datetime, body: bytes,
                      signing: list[str]) -> dict[str, str]:
    signatures = " ".join(Webhook(secret).sign(msg_id, at, body) for secret in signing)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures}

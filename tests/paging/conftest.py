"""PagerDuty and Opsgenie deliveries as the vendors send them: their documented example bodies
(tests/paging/payloads/), signed with the documented algorithm here, not with our code."""

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest

from breakglass.models import Group
from breakglass.tokens import hash_token
from paging.models import Source, Subscription
from recovery.crypto import encrypt_field

PAYLOADS = Path(__file__).parent / "payloads"
PAGERDUTY_SECRET = "whsec-pagerduty-" + "s3cr3t" * 8
OPSGENIE_TOKEN = "opsgenie-" + "t0k3n" * 8


def payload(name: str, **replacements: str) -> bytes:
    """A documented example body, byte for byte, with only the named strings replaced (each
    must be there): what a signature covers is the raw body."""
    text = (PAYLOADS / name).read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


def now_iso(seconds_ago: float = 0) -> str:
    moment = datetime.now(UTC).timestamp() - seconds_ago
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def pagerduty_signature(body: bytes, secret: str = PAGERDUTY_SECRET) -> str:
    """PagerDuty's "Verifying Signatures" (developer-docs docs/webhooks/04-Signatures.md): v1=
    and the hex HMAC-SHA256 of the whole body under the subscription's secret."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def pagerduty(db) -> Subscription:
    return Subscription.objects.create(name="Production", slug="production",
                                       source=Source.PAGERDUTY,
                                       secret_encrypted=encrypt_field(PAGERDUTY_SECRET))


@pytest.fixture
def opsgenie(db) -> Subscription:
    return Subscription.objects.create(name="Operations", slug="operations",
                                       source=Source.OPSGENIE,
                                       token_hash=hash_token(OPSGENIE_TOKEN))


@pytest.fixture
def armed(owner, member) -> Group:
    """A group only an open incident linked to it lets anyone break glass on."""
    group = Group.objects.create(name="Payments", slug="payments", armed_by_incident=True)
    group.owners.add(owner)
    group.break_glass_users.add(member)
    return group

"""Who is calling: PagerDuty's v1 signatures and Opsgenie's bearer token, both compared in
constant time. PagerDuty's "Verifying Signatures":
https://github.com/PagerDuty/developer-docs/blob/main/docs/webhooks/04-Signatures.md"""

import hashlib
import hmac

from breakglass.tokens import hash_token
from breakglass.tokens import matches as token_matches
from paging.models import Source, Subscription
from recovery.crypto import CryptoError, decrypt_field

# More than a handful of signatures is not a secret rotation.
MAX_SIGNATURES = 8


def pagerduty_signature(secret: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pagerduty_signed(subscription: Subscription, body: bytes, header: str) -> bool:
    """Whether any v1 signature of `X-PagerDuty-Signature` (several, comma-separated, while
    PagerDuty rotates the secret) is the body's HMAC-SHA256 under the subscription's secret."""
    if subscription.source != Source.PAGERDUTY or not subscription.secret_encrypted:
        return False
    try:
        secret = decrypt_field(subscription.secret_encrypted)
    except CryptoError:
        return False
    expected = pagerduty_signature(secret, body).encode()
    offered = [item.strip().encode() for item in header.split(",")[:MAX_SIGNATURES]]
    # Every candidate is compared, so the time taken does not say which one matched.
    return sum(hmac.compare_digest(expected, item) for item in offered) > 0


def opsgenie_token_accepted(subscription: Subscription, header: str) -> bool:
    if subscription.source != Source.OPSGENIE or not subscription.token_hash:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return token_matches(token.strip(), subscription.token_hash)


def opsgenie_token_hash(token: str) -> str:
    return hash_token(token)

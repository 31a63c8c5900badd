"""The signed links of "Not us — revoke and lock": every break-glass alert to a reviewer or an
owner carries one, signed for that person and that grant, working for 24 hours. Signing and
reading only; review/abort.py uses a link, once."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "breakglass.abort.v1"
MAX_AGE = timedelta(hours=24)


class AbortRefused(Exception):
    status = 400


def abort_token(grant, user) -> str:
    return signing.dumps({"g": grant.pk, "u": user.pk, "n": secrets.token_urlsafe(8)},
                         salt=SALT, compress=True)


def abort_link(grant, user) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("review:abort", args=[abort_token(grant,
                                                                                      user)])


def read(token: str) -> tuple[int, int]:
    """(grant id, user id), or AbortRefused saying why."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.SignatureExpired as expired:
        raise AbortRefused("This link has expired (links work for 24 hours): end the access "
                           "from the group page or the admin.") from expired
    except signing.BadSignature as forged:
        raise AbortRefused("This link is not valid.") from forged
    if not (isinstance(payload, dict) and isinstance(payload.get("g"), int)
            and isinstance(payload.get("u"), int)):
        raise AbortRefused("This link is not valid.")
    return payload["g"], payload["u"]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

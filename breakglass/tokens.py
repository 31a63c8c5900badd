"""API tokens: `bg_<prefix>_<secret>`, 32 random bytes of secret; stored as SHA-256 only."""

import hashlib
import hmac
import secrets

PREFIX_BYTES = 4
SECRET_BYTES = 32


def new_token() -> tuple[str, str, str]:
    """Returns (token, prefix, hash). The token is for the caller's eyes only."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    token = f"bg_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return token, prefix, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def split_prefix(token: str) -> str | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "bg" or len(parts[1]) != 2 * PREFIX_BYTES:
        return None
    return parts[1]


def matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)

"""Per-client-address limits of the public emergency page, counted in Django's cache like the
API's token failures: a client over the limit is refused before any website is looked up,
and repeated refusals leave one audit event per address and minute, not one per request."""

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from accounts.client_ip import client_ip

WINDOW_SECONDS = 60


def over_limit(request: HttpRequest) -> bool:
    """Count this request against its client address; True once the minute's limit is passed."""
    key = f"emergency-requests:{client_ip(request)}"
    cache.add(key, 0, WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, WINDOW_SECONDS)
        count = 1
    return count > settings.EMERGENCY_PAGE_REQUESTS_PER_MINUTE


def first_this_minute(request: HttpRequest | None, what: str) -> bool:
    """True for the first `what` of a client address in a minute (always without a request:
    the system's own calls are never damped)."""
    if request is None:
        return True
    return cache.add(f"emergency-{what}:{client_ip(request)}", 1, WINDOW_SECONDS)

from datetime import datetime

from django import template
from django.utils import timezone

from review.services import may_review
from risk import durations
from risk.anomalies import describe

register = template.Library()


@register.filter
def time_left(moment: datetime | None) -> str:
    """"11 h 42 min", "3 min 20 s" or "ended" — the words beside every countdown."""
    if moment is None:
        return ""
    seconds = int((moment - timezone.now()).total_seconds())
    if seconds <= 0:
        return "ended"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


@register.filter
def percent_used(grant) -> int:
    if not grant.activated_at or not grant.expires_at:
        return 0
    total = (grant.expires_at - grant.activated_at).total_seconds()
    used = (timezone.now() - grant.activated_at).total_seconds()
    return max(0, min(100, int(100 * used / total))) if total > 0 else 100


@register.filter
def duration_words(duration) -> str:
    """A timedelta in words: "12 hours", "1 hour 30 minutes", "3 days"."""
    return durations.minutes_words(int(duration.total_seconds() // 60))


@register.filter
def minutes_words(minutes: int) -> str:
    return durations.minutes_words(minutes)


@register.filter
def flag_words(flags) -> list[str]:
    """Anomaly flag codes in words."""
    return describe(list(flags or []))


@register.filter
def reviews_uses(user) -> bool:
    """Whether the nav shows Reviews: security reviewers and administrators."""
    if not user.is_authenticated:
        return False
    if not hasattr(user, "_reviews_uses"):  # asked once per request, however often shown
        user._reviews_uses = may_review(user)
    return user._reviews_uses

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from audit.history import ConfigurationHistory


class Schedule(models.Model):
    """An on-call rota: who is on call when. A group can take its members from a schedule,
    so "who is on call now" can be given access like any other membership."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = ConfigurationHistory()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def on_call_now(self, at=None):
        """Active users with a shift of this schedule covering `at` (now)."""
        covering = self.shifts.covering(at).values("user_id")
        return get_user_model().objects.filter(pk__in=covering, is_active=True)


class ShiftQuerySet(models.QuerySet):
    def covering(self, at=None):
        """Shifts under way at `at` (now): started at or before it, ending after it."""
        at = at or timezone.now()
        return self.filter(starts_at__lte=at, ends_at__gt=at)

    def coming(self, at=None):
        """Shifts that have not ended at `at` (now): the ongoing and the future ones."""
        return self.filter(ends_at__gt=at or timezone.now())


class Shift(models.Model):
    """One user on call in one schedule from `starts_at` until just before `ends_at`.

    A user's shifts in one schedule never overlap; oncall/services.py and the admin's
    inline check that (the database cannot without PostgreSQL's btree_gist)."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="shifts",
                                 db_index=False)  # led by the schedule index below
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="shifts", db_index=False)  # led by the user index
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    history = ConfigurationHistory()

    objects = ShiftQuerySet.as_manager()

    class Meta:
        ordering = ["starts_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")),
                                   name="shift_ends_after_it_starts",
                                   violation_error_message="The shift must end after it starts."),
        ]
        # "Who is on call in schedule S at t" and "where is user U on call at t" (the access
        # check, by schedule and user): ends_at > t leads, because the shifts ending after t
        # are the few coming ones, while those starting before t grow without bound.
        indexes = [
            models.Index(fields=["schedule", "ends_at", "starts_at"],
                         name="shift_schedule_ends_starts"),
            models.Index(fields=["user", "ends_at", "starts_at"], name="shift_user_ends_starts"),
        ]

    def __str__(self) -> str:
        starts = timezone.localtime(self.starts_at)
        ends = timezone.localtime(self.ends_at)
        return (f"{self.user} on call in {self.schedule} from {starts:%Y-%m-%d %H:%M} "
                f"to {ends:%Y-%m-%d %H:%M}")

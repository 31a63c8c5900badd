"""Figures for the admin dashboard and the CSV exports (SPEC §2.8 "Dashboard and reports").

Read-only: every figure is aggregated in the database, so the number of queries stays the same
however many uses there are. Each function takes `now` so a caller (or a test) can ask about
another instant; the default is `timezone.now()`.
"""

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, DurationField, Exists, ExpressionWrapper, F, Max, OuterRef, Q
from django.db.models.functions import TruncMonth
from django.utils import timezone

from audit.models import Delivery
from breakglass.models import Connector, Grant, Group
from breakglass.services import connectors
from recovery.models import RecoveryAttempt, RecoveryPolicy
from review.models import Review

DRILL_MAX_AGE = timedelta(days=90)
MONTHS = 12
TOP = 10
# Spreadsheet applications run a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Month:
    start: date
    counts: dict[str, int]  # path -> uses

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class DrillRow:
    kind: str  # "group" or "policy"
    name: str
    pk: int
    last_drill_at: datetime | None
    age_days: int | None
    due: bool


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def month_starts(now: datetime | None = None, months: int = MONTHS) -> list[date]:
    """The first day of each of the last `months` months, oldest first, this month last."""
    today = timezone.localdate(_now(now))
    index = today.year * 12 + today.month - 1
    return [date((i // 12), i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


def uses_per_month(now: datetime | None = None, months: int = MONTHS) -> list[Month]:
    """Uses (reviews opened) per calendar month and path, drills included; empty months too."""
    starts = month_starts(now, months)
    first = timezone.make_aware(datetime.combine(starts[0], datetime.min.time()))
    rows = (Review.objects.filter(opened_at__gte=first, opened_at__lte=_now(now))
            .annotate(month=TruncMonth("opened_at")).order_by()
            .values("month", "path").annotate(n=Count("pk")))
    counts: dict[date, dict[str, int]] = {start: {} for start in starts}
    for row in rows:
        month = row["month"]
        month = timezone.localdate(month) if isinstance(month, datetime) else month
        counts.setdefault(month, {})[row["path"]] = row["n"]
    return [Month(start, {path: counts[start].get(path, 0) for path in Review.Path.values})
            for start in starts]


def uses_per_path() -> list[dict]:
    """All-time uses per path, with how many of them were drills, in the order of Path."""
    rows = {row["path"]: row for row in Review.objects.order_by().values("path").annotate(
        uses=Count("pk"), drills=Count("pk", filter=Q(is_drill=True)))}
    return [{"path": value, "label": label, "uses": rows.get(value, {}).get("uses", 0),
             "drills": rows.get(value, {}).get("drills", 0)}
            for value, label in Review.Path.choices]


def top_targets(field: str, limit: int = TOP) -> list[dict]:
    """The groups, policies or websites (`field`) broken into most often, all time."""
    return list(Review.objects.filter(**{f"{field}__isnull": False}).order_by()
                .values(name=F(f"{field}__name"))
                .annotate(uses=Count("pk"), drills=Count("pk", filter=Q(is_drill=True)),
                          last_at=Max("opened_at"))
                .order_by("-uses", "name")[:limit])


def median_time_to_review() -> timedelta | None:
    """The median of reviewed_at - opened_at over closed reviews; None when none is closed."""
    closed = Review.objects.exclude(outcome="").filter(reviewed_at__isnull=False)
    count = closed.count()
    if not count:
        return None
    durations = (closed.annotate(took=ExpressionWrapper(F("reviewed_at") - F("opened_at"),
                                                        output_field=DurationField()))
                 .order_by("took").values_list("took", flat=True))
    middle = list(durations[(count - 1) // 2:count // 2 + 1])
    return sum(middle, timedelta()) / len(middle)


def open_reviews() -> dict[str, int]:
    return Review.objects.filter(outcome="").aggregate(
        open=Count("pk"), escalated=Count("pk", filter=Q(escalated_at__isnull=False)))


def active_grants(now: datetime | None = None) -> dict[str, int]:
    return Grant.objects.active(at=_now(now)).aggregate(
        active=Count("pk"), break_glass=Count("pk", filter=~Q(source=Grant.Source.REQUEST)))


@dataclass(frozen=True)
class ConnectorRow:
    connector: Connector
    pending: int
    stale: bool


def connector_health() -> list[ConnectorRow]:
    """Each connector's health, last reconciliation and pending revocations: two queries."""
    pending = connectors.pending_count_by_connector()
    return [ConnectorRow(connector, pending.get(connector.pk, 0), connectors.stale(connector))
            for connector in Connector.objects.select_related("group").order_by("name")]


def failed_deliveries() -> int:
    return Delivery.objects.filter(status=Delivery.Status.FAILED).count()


def drills(now: datetime | None = None) -> list[DrillRow]:
    """The last successful drill of every group with break-glass users (a drill grant that
    activated) and of every enabled recovery policy (a drill attempt whose glass broke);
    due when older than 90 days or never held. Due ones first, then the oldest."""
    now = _now(now)
    holders = Group.break_glass_users.through.objects.filter(group_id=OuterRef("pk"))
    groups = (Group.objects.filter(Exists(holders)).order_by()
              .annotate(last=Max("grants__activated_at",
                                 filter=Q(grants__is_drill=True))).values("pk", "name", "last"))
    policies = (RecoveryPolicy.objects.filter(enabled=True).order_by()
                .annotate(last=Max("attempts__broken_at", filter=Q(
                    attempts__is_drill=True, attempts__status=RecoveryAttempt.Status.BROKEN)))
                .values("pk", "name", "last"))
    rows = [_drill_row(kind, row, now)
            for kind, rows in (("group", groups), ("policy", policies)) for row in rows]
    return sorted(rows, key=lambda row: (not row.due, row.last_drill_at or datetime.min.replace(
        tzinfo=now.tzinfo), row.name))


def _drill_row(kind: str, row: dict, now: datetime) -> DrillRow:
    last = row["last"]
    if last is None:
        return DrillRow(kind, row["name"], row["pk"], None, None, due=True)
    return DrillRow(kind, row["name"], row["pk"], last, max((now - last).days, 0),
                    due=now - last > DRILL_MAX_AGE)


# --- CSV -----------------------------------------------------------------------------------------

USES_HEADER = ["opened_at", "path", "group", "policy", "website", "subject", "drill", "flags",
               "open"]
REVIEWS_HEADER = ["review", "opened_at", "path", "what", "subject", "drill", "outcome",
                  "reviewed_by", "reviewed_at", "hours_to_review", "escalated_at", "aborted_at",
                  "notes", "postmortem_url"]


def safe_cell(value) -> str:
    """Text a spreadsheet shows as text: a cell that would start a formula gets a quote."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


class _Line:
    """A file-like object whose write() hands the line back, for streaming (Django docs)."""

    def write(self, value: str) -> str:
        return value


def write_csv(header: list[str], rows: Iterable[Iterable]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


def uses_csv(rows: Iterable[dict] | None = None) -> Iterator[str]:
    """One line per use (every use opens a review), newest first, as CSV text lines."""
    if rows is None:
        rows = (Review.objects.order_by("-opened_at", "-pk")
                .values("opened_at", "path", "group__name", "policy__name", "website__name",
                        "subject_label", "is_drill", "flags", "outcome").iterator(2000))
    return write_csv(USES_HEADER, (
        [row["opened_at"], row["path"], row["group__name"], row["policy__name"],
         row["website__name"], row["subject_label"], row["is_drill"],
         " ".join(map(str, row["flags"] or [])), not row["outcome"]] for row in rows))


def reviews_csv(rows: Iterable[dict] | None = None) -> Iterator[str]:
    """One line per review with its judgement, newest first, as CSV text lines."""
    if rows is None:
        rows = (Review.objects.order_by("-opened_at", "-pk")
                .values("pk", "opened_at", "path", "group__name", "policy__name",
                        "website__name", "subject_label", "is_drill", "outcome",
                        "reviewed_by__username", "reviewed_at", "escalated_at", "aborted_at",
                        "notes", "postmortem_url").iterator(2000))
    return write_csv(REVIEWS_HEADER, (_review_line(row) for row in rows))


def _review_line(row: dict) -> list:
    took = None
    if row["reviewed_at"]:
        took = round((row["reviewed_at"] - row["opened_at"]) / timedelta(hours=1), 2)
    what = row["group__name"] or row["policy__name"] or row["website__name"]
    return [row["pk"], row["opened_at"], row["path"], what, row["subject_label"],
            row["is_drill"], row["outcome"] or "open", row["reviewed_by__username"],
            row["reviewed_at"], took, row["escalated_at"], row["aborted_at"], row["notes"],
            row["postmortem_url"]]

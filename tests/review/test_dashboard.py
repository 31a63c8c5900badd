"""The admin dashboard: figures, the uses chart, drills due, CSV exports and who may see them.

The dashboard is read-only, so these tests build the rows directly (reviews, grants, drill
attempts, deliveries) rather than walking the services that will write them. Time travel moves
`django.utils.timezone.now`, which every figure reads.
"""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import Delivery
from audit.services import record
from backups.models import Website
from breakglass.models import Grant, Group
from recovery.models import RecoveryAttempt, RecoveryPolicy
from reports import dashboard, reports
from review.models import Review
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def travel(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(NOW)
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture
def group(member) -> Group:
    group = Group.objects.create(name="Production database", slug="prod-db")
    group.break_glass_users.add(member)
    return group


@pytest.fixture
def policy(owner) -> RecoveryPolicy:
    return RecoveryPolicy.objects.create(name="Root keys", slug="root-keys", first_user=owner,
                                         required=1, enabled=True)


@pytest.fixture
def website(owner) -> Website:
    return Website.objects.create(name="Shop", address="shop.example.org", manager=owner)


def use(path: str = Review.Path.GROUP, *, at: datetime, label: str = "mark", **fields) -> Review:
    return Review.objects.create(path=path, opened_at=at, subject_label=label, **fields)


def closed(at: datetime, took: timedelta, **fields) -> Review:
    return use(at=at, outcome=Review.Outcome.JUSTIFIED, reviewed_at=at + took, **fields)


def grant(user: User, group: Group, *, status: str = Grant.Status.ACTIVE, drill: bool = False,
          activated_at: datetime | None = None, hours: int = 4) -> Grant:
    activated_at = activated_at or timezone.now() - timedelta(hours=1)
    return Grant.objects.create(
        user=user, group=group, status=status, source=Grant.Source.BREAK_GLASS, reason="outage",
        is_drill=drill, requested_at=activated_at, activated_at=activated_at,
        expires_at=activated_at + timedelta(hours=hours))


def drill_attempt(policy: RecoveryPolicy, *, broken_at: datetime,
                  status: str = RecoveryAttempt.Status.BROKEN) -> RecoveryAttempt:
    return RecoveryAttempt.objects.create(
        policy=policy, initiator=policy.first_user, reason="quarterly drill", status=status,
        is_drill=True, opened_at=broken_at - timedelta(minutes=5),
        expires_at=broken_at + timedelta(minutes=55), broken_at=broken_at)


def delivery(status: str, recipient: str) -> Delivery:
    with transaction.atomic():
        event = record(EventKind.GRANT_REVOKED, actor=None, reason="test")
    return Delivery.objects.create(event=event, channel=Delivery.Channel.EMAIL,
                                   recipient=recipient, body="x", status=status,
                                   created_at=timezone.now(), next_attempt_at=timezone.now())


def render_dashboard(user: User) -> str:
    request = RequestFactory().get("/admin/dashboard/")
    request.user = user
    user.is_verified = lambda: True  # what django-otp's middleware says after a second factor
    response = dashboard.dashboard(request)
    assert response.status_code == 200
    return response.content.decode()


def csv_rows(lines) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(lines))))


# --- figures ---------------------------------------------------------------------------------


def test_uses_are_counted_per_month_and_path_over_the_last_twelve_months(
        clock, group, policy, website):
    use(at=NOW - timedelta(days=1), group=group)
    use(at=NOW - timedelta(days=2), group=group, is_drill=True)
    use(Review.Path.API, at=NOW - timedelta(days=3), group=group)
    use(Review.Path.QUORUM, at=datetime(2026, 1, 31, 23, 59, tzinfo=UTC), policy=policy)
    use(Review.Path.BACKUP, at=datetime(2025, 4, 1, 0, 0, tzinfo=UTC), website=website)
    use(at=datetime(2025, 3, 31, 23, 59, tzinfo=UTC), group=group)  # 13 months ago: left out

    months = reports.uses_per_month()

    assert [month.start.isoformat() for month in (months[0], months[-1])] == [
        "2025-04-01", "2026-03-01"]
    assert len(months) == 12
    by_month = {month.start.isoformat()[:7]: month.counts for month in months}
    assert by_month["2026-03"] == {"group": 2, "api": 1, "quorum": 0, "backup": 0}
    assert by_month["2026-01"] == {"group": 0, "api": 0, "quorum": 1, "backup": 0}
    assert by_month["2025-04"] == {"group": 0, "api": 0, "quorum": 0, "backup": 1}
    assert sum(month.total for month in months) == 5
    paths = {row["path"]: (row["uses"], row["drills"]) for row in reports.uses_per_path()}
    assert paths == {"group": (3, 1), "api": (1, 0), "quorum": (1, 0), "backup": (1, 0)}


def test_top_groups_are_ranked_by_uses(clock, group):
    quiet = Group.objects.create(name="Billing", slug="billing")
    for days in (1, 2, 3):
        use(at=NOW - timedelta(days=days), group=group)
    use(at=NOW - timedelta(days=9), group=quiet, is_drill=True)

    top = reports.top_targets("group")

    assert [(row["name"], row["uses"], row["drills"]) for row in top] == [
        ("Production database", 3, 0), ("Billing", 1, 1)]
    assert top[0]["last_at"] == NOW - timedelta(days=1)


def test_median_time_to_review_counts_closed_reviews_only(clock):
    assert reports.median_time_to_review() is None
    for hours in (10, 1, 3):
        closed(NOW - timedelta(days=5), timedelta(hours=hours))
    use(at=NOW - timedelta(days=30))  # open for a month: not a time to review
    assert reports.median_time_to_review() == timedelta(hours=3)

    closed(NOW - timedelta(days=5), timedelta(hours=20))
    assert reports.median_time_to_review() == timedelta(hours=6.5)


def test_open_reviews_active_grants_and_failed_deliveries(clock, group, member, outsider):
    use(at=NOW - timedelta(days=4), escalated_at=NOW - timedelta(days=1))
    use(at=NOW - timedelta(hours=2))
    closed(NOW - timedelta(days=9), timedelta(hours=1))
    grant(member, group)
    grant(outsider, group, activated_at=NOW - timedelta(hours=5), hours=4)  # past its expiry
    grant(make_user("vera"), group, status=Grant.Status.REVOKED)
    delivery(Delivery.Status.FAILED, "a@example.com")
    delivery(Delivery.Status.FAILED, "b@example.com")
    delivery(Delivery.Status.SENT, "c@example.com")

    assert reports.open_reviews() == {"open": 2, "escalated": 1}
    assert reports.active_grants() == {"active": 1, "break_glass": 1}
    assert reports.failed_deliveries() == 2


def test_the_dashboard_shows_the_figures_and_a_chart_without_javascript(
        clock, admin_user, group, member):
    use(at=NOW - timedelta(days=1), group=group, escalated_at=NOW)
    closed(NOW - timedelta(days=40), timedelta(hours=2, minutes=30), group=group)
    grant(member, group)
    delivery(Delivery.Status.FAILED, "a@example.com")

    page = render_dashboard(admin_user)

    content = page[page.index('<div id="content-main">'):page.index('<footer')]
    assert "<script" not in content  # the chart is drawn on the server
    assert '<svg viewBox="0 0 600 300"' in page
    assert "<title id=\"chart-title\">Break-glass uses per month by path</title>" in page
    assert "from April 2025 to March 2026; 2 uses in all" in page
    assert "March 2026, Group break glass: 1" in page  # a bar segment, and its tooltip
    assert '<th scope="row">Mar 2026</th><td>1</td><td>0</td><td>0</td><td>0</td><td>1</td>' in (
        page)
    assert "2 h 30 min" in page
    assert "Open reviews</th><td>" in page  # linked to the reviews list once it is registered
    assert ('>1</a> <span class="badge badge--amber">1 escalated</span>' in page
            or '<td>1 <span class="badge badge--amber">1 escalated</span>' in page)
    assert '?status__exact=active">1</a> (1 by break glass)' in page
    assert '?status__exact=failed">1</a>' in page
    assert reverse("admin:review_uses_csv") in page


# --- drills ----------------------------------------------------------------------------------


def drill_cell(page: str, name: str) -> str:
    start = page.index(f">{name}</a>")
    return " ".join(page[start:page.index("</td>", start)].split())


def test_a_drill_older_than_ninety_days_is_due_after_time_travel(
        clock, admin_user, group, member, policy):
    grant(member, group, drill=True, status=Grant.Status.EXPIRED,
          activated_at=NOW - timedelta(days=10))
    drill_attempt(policy, broken_at=NOW - timedelta(days=10))

    page = render_dashboard(admin_user)
    assert "Drill due" not in page
    assert "Drilled</span> 10 days ago" in drill_cell(page, "Production database")
    assert "Drilled</span> 10 days ago" in drill_cell(page, "Root keys")

    clock.travel(timedelta(days=81))
    page = render_dashboard(admin_user)
    for name in ("Production database", "Root keys"):
        assert "Drill due</span> last one 91 days ago" in drill_cell(page, name)
    assert "<span class=\"badge badge--amber\">Due</span> 2 of 2" in page


def test_a_group_or_policy_never_drilled_is_due(clock, admin_user, group, member, policy):
    grant(member, group, activated_at=NOW - timedelta(days=1))  # a real use, not a drill
    drill_attempt(policy, broken_at=NOW - timedelta(days=1),
                  status=RecoveryAttempt.Status.CANCELLED)  # the glass never broke
    RecoveryPolicy.objects.create(name="Disabled", slug="disabled", first_user=member)
    Group.objects.create(name="Nobody may break glass here", slug="nobody")

    rows = reports.drills()

    assert [(row.kind, row.name, row.due, row.last_drill_at) for row in rows] == [
        ("group", "Production database", True, None), ("policy", "Root keys", True, None)]
    page = render_dashboard(admin_user)
    assert "Drill due</span> never drilled" in drill_cell(page, "Production database")
    assert "Drill due</span> never drilled" in drill_cell(page, "Root keys")


def test_the_latest_drill_counts(clock, group, member, outsider):
    group.break_glass_users.add(outsider)
    grant(member, group, drill=True, status=Grant.Status.EXPIRED,
          activated_at=NOW - timedelta(days=200))
    grant(outsider, group, drill=True, status=Grant.Status.EXPIRED,
          activated_at=NOW - timedelta(days=30))

    [row] = reports.drills()

    assert (row.name, row.age_days, row.due) == ("Production database", 30, False)


# --- CSV exports -----------------------------------------------------------------------------


def test_the_uses_export_has_one_line_per_use_and_neutralises_formulas(clock, group, policy):
    use(at=NOW - timedelta(days=2), group=group, flags=["off_hours", "first_access"])
    use(Review.Path.QUORUM, at=NOW - timedelta(days=1), policy=policy,
        label='=HYPERLINK("http://evil.example","click")', is_drill=True,
        outcome=Review.Outcome.DRILL, reviewed_at=NOW)

    header, newest, oldest = csv_rows(reports.uses_csv())

    assert header == reports.USES_HEADER
    assert newest == ["2026-03-14T12:00:00+00:00", "quorum", "", "Root keys", "",
                      '\'=HYPERLINK("http://evil.example","click")', "yes", "", "no"]
    assert oldest == ["2026-03-13T12:00:00+00:00", "group", "Production database", "", "",
                      "mark", "no", "off_hours first_access", "yes"]


def test_the_reviews_export_has_outcomes_and_time_to_review(clock, group, reviewer):
    closed(NOW - timedelta(days=3), timedelta(hours=1, minutes=30), group=group,
           reviewed_by=reviewer, notes="-1 for the runbook", label="@mark")
    use(at=NOW - timedelta(days=1), group=group)

    header, open_row, closed_row = csv_rows(reports.reviews_csv())

    assert header == reports.REVIEWS_HEADER
    row = dict(zip(header, closed_row, strict=True))
    assert (row["outcome"], row["reviewed_by"], row["hours_to_review"]) == (
        "justified", "rita", "1.5")
    assert (row["subject"], row["notes"], row["what"]) == (
        "'@mark", "'-1 for the runbook", "Production database")
    assert dict(zip(header, open_row, strict=True))["outcome"] == "open"


def test_exports_download_as_attachments(verified_client, admin_user, group):
    use(at=timezone.now(), group=group, label="+1 555 0100")
    client = verified_client(admin_user)

    for name, lines in (("review_uses_csv", 2), ("review_reviews_csv", 2)):
        response = client.get(reverse(f"admin:{name}"))
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith("attachment; filename=\"breakglass-")
        rows = csv_rows(chunk.decode() for chunk in response.streaming_content)
        assert len(rows) == lines
        assert "'+1 555 0100" in rows[1]


# --- who may see it --------------------------------------------------------------------------


def staff(username: str, *, may_view_reviews: bool) -> User:
    user = make_user(username, is_staff=True)
    if may_view_reviews:
        user.user_permissions.add(Permission.objects.get(codename="view_review"))
    return user


@pytest.mark.parametrize("name", ["review_dashboard", "review_uses_csv", "review_reviews_csv"])
def test_only_staff_who_may_view_reviews_see_the_dashboard(
        name, client, verified_client, admin_user, outsider):
    url = reverse(f"admin:{name}")
    assert client.get(url).status_code == 302  # anonymous: to the sign-in page
    response = verified_client(outsider).get(url)  # signed in, not staff: the admin says no
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert verified_client(staff("sam", may_view_reviews=False)).get(url).status_code == 403
    assert verified_client(staff("vic", may_view_reviews=True)).get(url).status_code == 200
    assert verified_client(admin_user).get(url).status_code == 200


def test_the_view_refuses_a_user_without_the_permission_even_unwrapped(member):
    request = RequestFactory().get("/admin/dashboard/")
    request.user = member
    with pytest.raises(PermissionDenied):
        dashboard.dashboard(request)


# --- bounded queries -------------------------------------------------------------------------


def dashboard_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("admin:review_dashboard")).status_code == 200
    return len(queries)


def test_the_dashboard_queries_do_not_grow_with_the_uses(verified_client, admin_user, owner):
    client = verified_client(admin_user)
    now = timezone.now()

    def add_uses(count: int) -> None:
        for i in range(count):
            group = Group.objects.create(name=f"Group {i}-{count}", slug=f"g-{i}-{count}")
            group.break_glass_users.add(owner)
            grant(owner, group, drill=True, status=Grant.Status.EXPIRED,
                  activated_at=now - timedelta(days=i))
            closed(now - timedelta(days=i * 7), timedelta(hours=i + 1), group=group)

    add_uses(5)
    few = dashboard_queries(client)
    add_uses(45)
    assert dashboard_queries(client) == few
    assert few < 30

"""Anomaly flags of a break-glass activation (SPEC §2.7): each of the five raised and not
raised, and a flagged use reaching security reviewers by SMS where the cell has none."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from audit.services import record
from breakglass.models import Grant, Group
from breakglass.services.break_glass import break_glass
from breakglass.sql import flag_answers
from oncall.models import Schedule, Shift
from risk.anomalies import FLAGS, flags_from
from risk.models import Sensitivity
from risk.rules import default_cells
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

# A Wednesday.
WEDNESDAY = datetime(2031, 1, 8, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _always_working_hours(settings):
    """Outside-hours flags only where a test asks for them: the suite runs at any hour."""
    settings.WORKING_HOURS = ""
    settings.WORKING_HOURS_TIME_ZONE = "UTC"
    settings.TRUSTED_PROXY_COUNT = 0


@pytest.fixture
def group(owner, member) -> Group:
    group = Group.objects.create(name="Billing", slug="billing", sensitivity=Sensitivity.LOW)
    group.owners.add(owner)
    group.break_glass_users.add(member)
    return group


def past_grant(user, group, *, days_ago: float, source=Grant.Source.BREAK_GLASS,
               activated: bool = True) -> Grant:
    """A grant that began `days_ago` and has ended (or a request that never activated)."""
    began = timezone.now() - timedelta(days=days_ago)
    return Grant.objects.create(
        user=user, group=group, source=source, reason="earlier",
        status=Grant.Status.EXPIRED if activated else Grant.Status.DENIED,
        requested_at=began, activated_at=began if activated else None,
        expires_at=began + timedelta(hours=1) if activated else None,
        ended_at=began + timedelta(hours=1))


def flags(user, group, **options) -> list[str]:
    """The flags break glass would raise now: its questions asked alone, then read."""
    now = options.pop("now", None) or timezone.now()
    return flags_from(flag_answers(user, group, now=now, **options), now=now,
                      ip=options.get("ip", ""))


# --- frequent_use ------------------------------------------------------------------------------

def test_a_fourth_use_in_seven_days_is_frequent(member, group):
    for days_ago in (6.5, 3, 1):
        past_grant(member, group, days_ago=days_ago)
    assert "frequent_use" in flags(member, group)


def test_three_uses_or_old_ones_or_requests_are_not_frequent(member, group):
    other = Group.objects.create(name="Other", slug="other")
    past_grant(member, group, days_ago=2)
    past_grant(member, other, days_ago=1, source=Grant.Source.API)
    assert "frequent_use" not in flags(member, group)  # this would be the third use
    past_grant(member, group, days_ago=8)  # outside the window
    past_grant(member, group, days_ago=1, source=Grant.Source.REQUEST)  # approved, not glass
    assert "frequent_use" not in flags(member, group)
    past_grant(member, other, days_ago=0.5, source=Grant.Source.API)
    assert "frequent_use" in flags(member, group)
    # Another user's uses do not count.
    assert "frequent_use" not in flags(make_user("nina"), group)


# --- not_on_call -------------------------------------------------------------------------------

@pytest.fixture
def rota(db) -> Schedule:
    return Schedule.objects.create(name="Primary", slug="primary")


def shift(rota, user, starts: timedelta, ends: timedelta) -> Shift:
    now = timezone.now()
    return Shift.objects.create(schedule=rota, user=user, starts_at=now + starts,
                                ends_at=now + ends)


def test_someone_else_on_call_raises_not_on_call(member, outsider, group, rota):
    shift(rota, outsider, -timedelta(hours=1), timedelta(hours=1))
    shift(rota, member, timedelta(hours=1), timedelta(hours=9))  # later today
    shift(rota, member, -timedelta(hours=9), -timedelta(hours=1))  # ended
    assert "not_on_call" in flags(member, group)


def test_being_on_call_or_a_deployment_without_shifts_is_not_flagged(member, group, rota):
    assert "not_on_call" not in flags(member, group)  # no shifts at all: nobody can tell
    shift(rota, member, -timedelta(hours=1), timedelta(hours=1))
    assert "not_on_call" not in flags(member, group)
    # Time travel past the shift's end: now the member is not on call.
    assert "not_on_call" in flags(member, group, now=timezone.now() + timedelta(hours=2))


# --- first_access ------------------------------------------------------------------------------

def test_a_first_access_is_flagged(member, group):
    other = Group.objects.create(name="Other", slug="other")
    past_grant(member, other, days_ago=10)  # another group
    past_grant(member, group, days_ago=10, source=Grant.Source.REQUEST, activated=False)
    assert "first_access" in flags(member, group)


def test_an_earlier_access_to_the_group_is_not_a_first(member, group):
    past_grant(member, group, days_ago=200, source=Grant.Source.REQUEST)
    assert "first_access" not in flags(member, group)


# --- new_ip ------------------------------------------------------------------------------------

def seen_at(user, ip: str) -> AuditEvent:
    request = RequestFactory().get("/", REMOTE_ADDR=ip)
    return record(EventKind.OTP_VERIFIED, actor=user, target=user, request=request)


def test_an_address_never_seen_is_new(member, outsider, group):
    seen_at(member, "198.51.100.7")
    seen_at(outsider, "203.0.113.9")  # someone else's address
    later = timezone.now() + timedelta(minutes=10)
    assert "new_ip" in flags(member, group, ip="203.0.113.9", now=later)
    # An address seen only in the last 30 days counts: 31 days later it is new again.
    assert "new_ip" in flags(member, group, ip="198.51.100.7",
                             now=timezone.now() + timedelta(days=31))
    # Seen only since the current session began: it does not make the address familiar.
    assert "new_ip" in flags(member, group, ip="198.51.100.7", now=later,
                             session_began=timezone.now() - timedelta(seconds=5))


def test_a_familiar_address_or_none_is_not_new(member, group):
    seen_at(member, "198.51.100.7")
    later = timezone.now() + timedelta(minutes=10)
    assert "new_ip" not in flags(member, group, ip="198.51.100.7", now=later)
    assert "new_ip" not in flags(member, group, ip="198.51.100.7", now=later,
                                 session_began=later - timedelta(minutes=5))
    assert "new_ip" not in flags(member, group, ip="", now=later)  # an application acting


# --- outside_hours -----------------------------------------------------------------------------

@pytest.mark.parametrize(("hours", "zone", "moment"), [
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=20)),
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=7, minute=59)),
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=18)),
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=10) + timedelta(days=3)),  # Saturday
    ("mon-fri 08:00-18:00", "America/New_York", WEDNESDAY.replace(hour=10)),  # 05:00 there
    ("fri-mon 00:00-24:00", "UTC", WEDNESDAY.replace(hour=12)),
])
def test_outside_working_hours_is_flagged(settings, member, group, hours, zone, moment):
    settings.WORKING_HOURS, settings.WORKING_HOURS_TIME_ZONE = hours, zone
    assert "outside_hours" in flags(member, group, now=moment)


@pytest.mark.parametrize(("hours", "zone", "moment"), [
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=10)),
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=8)),
    ("mon-fri 08:00-18:00", "UTC", WEDNESDAY.replace(hour=17, minute=59)),
    ("mon-fri 08:00-18:00", "America/New_York", WEDNESDAY.replace(hour=20)),  # 15:00 there
    ("fri-mon 00:00-24:00", "UTC", WEDNESDAY.replace(hour=23) + timedelta(days=4)),  # Sunday
    ("", "UTC", WEDNESDAY.replace(hour=3)),  # no working hours set: never outside
])
def test_inside_working_hours_is_not_flagged(settings, member, group, hours, zone, moment):
    settings.WORKING_HOURS, settings.WORKING_HOURS_TIME_ZONE = hours, zone
    assert "outside_hours" not in flags(member, group, now=moment)


# --- a flagged use alerts reviewers by SMS -----------------------------------------------------

@pytest.fixture
def mobiles(owner, reviewer):
    reviewer.mobile = "+15555550111"
    reviewer.save()
    owner.mobile = "+15555550122"
    owner.save()


def sms_recipients(event) -> set[str]:
    return set(Delivery.objects.filter(event=event, channel="sms")
               .values_list("recipient", flat=True))


def test_a_flagged_use_reaches_reviewers_by_sms_where_the_cell_has_none(group, member, owner,
                                                                        reviewer, mobiles):
    assert not default_cells()["low", "sev4"]["alert_sms"]
    grant = break_glass(group, actor=member, reason="invoices stuck", severity="sev4")
    assert grant.risk["flags"] == ["first_access"] and grant.risk["priority"] == "high"
    assert grant.risk["channels"] == ["email", "webhook"]
    event = AuditEvent.objects.get(kind=EventKind.GRANT_ACTIVATED)
    assert event.data["risk"]["flags"] == ["first_access"]
    send_due_deliveries()
    assert sms_recipients(event) == {reviewer.mobile}  # not the owner: the cell has no SMS
    sms = Delivery.objects.get(event=event, channel="sms")
    assert "HIGH PRIORITY" in sms.body and FLAGS["first_access"] in sms.body
    emails = set(Delivery.objects.filter(event=event, channel="email")
                 .values_list("recipient", flat=True))
    assert emails == {reviewer.email, owner.email}


def test_an_unflagged_use_sends_no_sms_where_the_cell_has_none(group, member, owner, reviewer,
                                                               mobiles):
    past_grant(member, group, days_ago=30)  # not a first access
    grant = break_glass(group, actor=member, reason="invoices stuck", severity="sev4")
    assert grant.risk["flags"] == [] and grant.risk["priority"] == "normal"
    event = AuditEvent.objects.get(kind=EventKind.GRANT_ACTIVATED)
    send_due_deliveries()
    assert sms_recipients(event) == set()
    emails = set(Delivery.objects.filter(event=event, channel="email")
                 .values_list("recipient", flat=True))
    assert emails == {reviewer.email, owner.email}


def test_a_flagged_use_where_the_cell_has_sms_alerts_each_once(group, member, owner, reviewer,
                                                              mobiles):
    assert default_cells()["low", "sev1"]["alert_sms"]
    break_glass(group, actor=member, reason="invoices stuck", severity="sev1")
    event = AuditEvent.objects.get(kind=EventKind.GRANT_ACTIVATED)
    send_due_deliveries()
    assert sorted(Delivery.objects.filter(event=event, channel="sms")
                  .values_list("recipient", flat=True)) == sorted([reviewer.mobile, owner.mobile])


def test_the_page_flags_a_new_address(verified_client, group, member, reviewer, mobiles):
    client = verified_client(member)
    response = client.post(f"/catalog/{group.slug}/break-glass/",
                           {"reason": "invoices stuck", "severity": "sev4"},
                           REMOTE_ADDR="203.0.113.50")
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert set(grant.risk["flags"]) == {"first_access", "new_ip"}
    send_due_deliveries()
    assert sms_recipients(AuditEvent.objects.get(kind=EventKind.GRANT_ACTIVATED)) == {
        reviewer.mobile}


# --- Working-hours settings ---------------------------------------------------------------

def test_overnight_working_hours_include_the_night(settings, member, group):
    settings.WORKING_HOURS = "mon-fri 22:00-06:00"
    assert "outside_hours" in flags(member, group, now=WEDNESDAY.replace(hour=12))
    assert "outside_hours" not in flags(member, group, now=WEDNESDAY.replace(hour=23))
    # The early hours belong to the night that began the day before: Saturday 03:00 is
    # Friday's night, Monday 03:00 is Sunday's (not worked).
    saturday, monday = WEDNESDAY + timedelta(days=3), WEDNESDAY + timedelta(days=5)
    assert "outside_hours" not in flags(member, group, now=saturday.replace(hour=3))
    assert "outside_hours" in flags(member, group, now=monday.replace(hour=3))


@pytest.mark.parametrize("value", ["mon-fri 08:00-24:30", "weekdays 9-5", "mon-fri 08:00-08:00"])
def test_a_bad_working_hours_setting_fails_the_system_check(settings, value):
    from django.core.exceptions import ImproperlyConfigured

    from risk.anomalies import check_working_hours, working_hours

    settings.WORKING_HOURS = value
    with pytest.raises(ImproperlyConfigured):
        working_hours()
    assert [error.id for error in check_working_hours()] == ["risk.E001"]


def test_an_unknown_time_zone_fails_the_check_but_never_blocks_break_glass(settings, member,
                                                                           group):
    from risk.anomalies import check_working_hours

    settings.WORKING_HOURS = "mon-fri 08:00-18:00"
    settings.WORKING_HOURS_TIME_ZONE = "Mars/Olympus"
    assert "Mars/Olympus" in check_working_hours()[0].msg
    # Flagged (the hours cannot be told), not refused.
    assert "outside_hours" in flags(member, group, now=WEDNESDAY.replace(hour=12))

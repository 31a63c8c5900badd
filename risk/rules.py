"""The one decision every break-glass path asks (SPEC §2.7): given the sensitivity of the group
or policy and the severity of the incident, what does the rule table allow? Group break glass
on the page and through the API, access requests and quorum attempts all call `decide_risk`,
and each stores the decision (with the cell that made it) on its audit event.

Also the table's own checks: a table with a gap or a contradiction is refused at save."""

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from django.db import transaction
from django.utils import timezone

from accounts.services import STEP_UP_WINDOW
from audit.catalogue import EventKind
from audit.services import record
from risk.models import (
    MAX_REQUEST_MINUTES,
    MIN_REQUEST_MINUTES,
    RiskRule,
    Sensitivity,
    Severity,
    cell_label,
)

# No incident and no severity given: treated as the least severe, so as the strictest.
UNSPECIFIED_SEVERITY = Severity.SEV4
SENSITIVITIES = [value for value, _ in Sensitivity.choices]  # least to most sensitive
SEVERITIES = [value for value, _ in Severity.choices]  # most to least severe
RULE_FIELDS = ("self_service", "max_minutes", "approvals", "step_up", "alert_email",
               "alert_sms", "alert_webhook")


class Path:
    BREAK_GLASS = "break_glass"  # the group page
    API = "api"  # POST /api/v1/break-glass
    REQUEST = "request"
    QUORUM = "quorum"

    SELF_SERVICE = (BREAK_GLASS, API)


@dataclass(frozen=True)
class RiskDecision:
    path: str
    sensitivity: str
    severity: str
    allowed: bool
    why: str = ""
    max_minutes: int = 0
    approvals: int = 1
    step_up: bool = False
    channels: tuple[str, ...] = ()
    needs_code: bool = field(default=False, compare=False)
    # A severity typed without an incident that did not pick the cell (see decide_severity).
    claimed_severity: str = ""

    @property
    def cell(self) -> str:
        return cell_label(self.sensitivity, self.severity)

    def as_data(self) -> dict:
        """What the audit event keeps: the decision and the cell that made it."""
        data = {"path": self.path, "cell": self.cell, "decision":
                "allowed" if self.allowed else "refused", "why": self.why,
                "max_minutes": self.max_minutes, "approvals": self.approvals,
                "step_up": self.step_up, "channels": list(self.channels)}
        if self.claimed_severity:
            data["claimed_severity"] = self.claimed_severity
        return data


class RiskRefused(Exception):
    """The rule table refuses this use; `status` is the HTTP answer."""

    status = 403

    def __init__(self, decision: RiskDecision):
        super().__init__(decision.why)
        self.decision = decision


def decide_risk(path: str, *, sensitivity: str, severity: str = "", claimed: str = "",
                stepped_up_at: datetime | None = None, now: datetime | None = None,
                rule: RiskRule | None = None) -> RiskDecision:
    """Apply the cell for `sensitivity` × `severity` to a use by `path`. `severity` is the one
    decide_severity chose; `claimed` the typed one it set aside, if any (kept on the decision).
    `stepped_up_at` is when the person acting last verified a one-time code (None: never, or an
    application). Pass `rule` when the caller already read it (the break-glass hot path reads
    it with its lock)."""
    severity = severity or UNSPECIFIED_SEVERITY
    now = now or timezone.now()
    label = cell_label(sensitivity, severity)
    if rule is None:
        rule = RiskRule.objects.filter(sensitivity=sensitivity, severity=severity).first()
    if rule is None:
        return RiskDecision(path, sensitivity, severity, allowed=False,
                            claimed_severity=claimed,
                            why=f"No risk rule for {label}: the rule table has a gap.")
    decided = dict(max_minutes=rule.max_minutes, approvals=rule.approvals,
                   step_up=rule.step_up, channels=tuple(rule.channels),
                   claimed_severity=claimed)
    if path in Path.SELF_SERVICE and not rule.self_service:
        return RiskDecision(path, sensitivity, severity, allowed=False, **decided, why=(
            f"Risk rule {label} does not allow self-service break glass: request access "
            "instead, or choose a more severe incident if there is one."
            + claim_note(claimed, severity)))
    # A quorum attempt always takes a fresh code from every participant: step-up is built in.
    if rule.step_up and path != Path.QUORUM:
        if path == Path.API:
            return RiskDecision(path, sensitivity, severity, allowed=False, **decided, why=(
                f"Risk rule {label} needs a one-time code verified in the last 5 minutes, "
                "which an application cannot give: break glass on the group's page."
                + claim_note(claimed, severity)))
        if stepped_up_at is None or now - stepped_up_at > STEP_UP_WINDOW:
            return RiskDecision(path, sensitivity, severity, allowed=False, needs_code=True,
                                **decided, why=(
                                    f"Risk rule {label} needs a one-time code verified in the "
                                    "last 5 minutes: enter a code from your authenticator."
                                    + claim_note(claimed, severity)))
    return RiskDecision(path, sensitivity, severity, allowed=True, **decided)


# A severity typed without an incident is a claim nobody confirmed: on high and critical
# groups and policies it may not pick a looser cell than this one. An open incident chosen
# with the use decides with its own severity.
UNCONFIRMED_SEVERITY_CAP = Severity.SEV3
CAPPED_SENSITIVITIES = (Sensitivity.HIGH, Sensitivity.CRITICAL)


def decide_severity(sensitivity: str, *, incident=None, severity: str = "") -> tuple[str, str]:
    """The severity that picks the rule cell, and the typed claim set aside ("" when none).
    An incident's severity wins over one typed beside it; without one, a typed SEV1 or SEV2
    counts as SEV3 on high and critical groups and policies."""
    if incident is not None:
        return incident.severity, ""
    severity = severity or ""
    if (sensitivity in CAPPED_SENSITIVITIES and severity
            and SEVERITIES.index(severity) < SEVERITIES.index(UNCONFIRMED_SEVERITY_CAP)):
        return str(UNCONFIRMED_SEVERITY_CAP), severity
    return severity, ""


def typed_severity_help(sensitivity: str) -> str:
    """The help text beside a form's severity field."""
    if sensitivity in CAPPED_SENSITIVITIES:
        return (f"Without an incident: the severity you declare, counted as "
                f"{UNCONFIRMED_SEVERITY_CAP.label} at most here (none counts as SEV4).")
    return "Without an incident: the severity you declare (none counts as SEV4)."


def claim_note(claimed: str, severity: str) -> str:
    """The sentence a refusal adds when a typed severity was counted lower."""
    if not claimed:
        return ""
    return (f" A {claimed.upper()} typed without an incident counts as {severity.upper()} "
            "here: choose the open incident to have its severity count.")


# The table's own checks.

def table_problems(cells: dict[tuple[str, str], dict]) -> list[str]:
    """Every gap and contradiction of a whole table, each naming its cell. `cells` maps
    (sensitivity, severity) to the rule's values (RULE_FIELDS)."""
    problems = []
    for sensitivity in SENSITIVITIES:
        for severity in SEVERITIES:
            values = cells.get((sensitivity, severity))
            label = cell_label(sensitivity, severity)
            if values is None:
                problems.append(f"{label}: missing. Every sensitivity needs a rule for every "
                                "severity.")
                continue
            if not (values["alert_email"] or values["alert_sms"] or values["alert_webhook"]):
                problems.append(f"{label}: choose at least one alert channel; every use alerts.")
            if not MIN_REQUEST_MINUTES <= values["max_minutes"] <= MAX_REQUEST_MINUTES:
                problems.append(f"{label}: the maximum duration must be 15 minutes to 14 days.")
            if not 1 <= values["approvals"] <= 3:
                problems.append(f"{label}: approvals needed must be 1 to 3.")
    for severity in SEVERITIES:
        for lower, higher in pairwise(SENSITIVITIES):
            problems += _looser((higher, severity), (lower, severity), cells,
                                "a more sensitive system")
    for sensitivity in SENSITIVITIES:
        for graver, milder in pairwise(SEVERITIES):
            problems += _looser((sensitivity, milder), (sensitivity, graver), cells,
                                "a less severe incident")
    return problems


def _looser(strict_key, loose_key, cells, what: str) -> list[str]:
    """Where the cell that must be at least as strict (`strict_key`) is looser than the other."""
    strict, loose = cells.get(strict_key), cells.get(loose_key)
    if strict is None or loose is None:
        return []
    here, there = cell_label(*strict_key), cell_label(*loose_key)
    found = []
    if strict["self_service"] and not loose["self_service"]:
        found.append(f"{here}: allows self-service break glass but {there} does not; "
                     f"{what} cannot be looser.")
    if strict["max_minutes"] > loose["max_minutes"]:
        found.append(f"{here}: allows longer access ({strict['max_minutes']} min) than {there} "
                     f"({loose['max_minutes']} min); {what} cannot be looser.")
    if strict["approvals"] < loose["approvals"]:
        found.append(f"{here}: needs fewer approvals ({strict['approvals']}) than {there} "
                     f"({loose['approvals']}); {what} cannot be looser.")
    if loose["step_up"] and not strict["step_up"]:
        found.append(f"{here}: needs no step-up code but {there} does; {what} cannot be looser.")
    if what.startswith("a more sensitive"):
        for channel in ("alert_email", "alert_sms", "alert_webhook"):
            if loose[channel] and not strict[channel]:
                name = channel.removeprefix("alert_")
                found.append(f"{here}: does not alert by {name} but {there} does; {what} "
                             "cannot alert fewer people.")
    return found


@transaction.atomic
def save_rule(rule: RiskRule, *, actor, request=None) -> list[str]:
    """Write one cell as edited (its form checked the whole table) and audit what changed,
    before and after. Returns the changed fields."""
    before = RiskRule.objects.filter(pk=rule.pk).values(*RULE_FIELDS).first() or {}
    after = {name: getattr(rule, name) for name in RULE_FIELDS}
    changed = sorted(name for name in RULE_FIELDS if before.get(name) != after[name])
    rule.save()
    if changed:
        record(EventKind.RISK_RULES_CHANGED, actor=actor, target=rule, request=request,
               data={"cell": rule.cell, "changed": changed, "before": before, "after": after})
    return changed


def current_table() -> dict[tuple[str, str], dict]:
    return {(rule.sensitivity, rule.severity): {name: getattr(rule, name) for name in RULE_FIELDS}
            for rule in RiskRule.objects.all()}


# The table that ships (a data migration loads it): (self-service, maximum minutes, approvals,
# step-up, email, SMS, webhook) per severity SEV1..SEV4.
FOURTEEN_DAYS = 14 * 24 * 60
DEFAULT_TABLE = {
    Sensitivity.LOW: [(True, FOURTEEN_DAYS, 1, False, True, True, True),
                      (True, FOURTEEN_DAYS, 1, False, True, True, True),
                      (True, FOURTEEN_DAYS, 1, False, True, False, True),
                      (True, FOURTEEN_DAYS, 1, False, True, False, True)],
    Sensitivity.MEDIUM: [(True, FOURTEEN_DAYS, 1, False, True, True, True)] * 4,
    Sensitivity.HIGH: [(True, 24 * 60, 1, False, True, True, True),
                       (True, 12 * 60, 1, False, True, True, True),
                       (True, 4 * 60, 1, True, True, True, True),
                       (False, 4 * 60, 1, True, True, True, True)],
    Sensitivity.CRITICAL: [(True, 4 * 60, 1, True, True, True, True),
                           (True, 2 * 60, 1, True, True, True, True),
                           (False, 2 * 60, 2, True, True, True, True),
                           (False, 60, 2, True, True, True, True)],
}


def default_cells() -> dict[tuple[str, str], dict]:
    return {(str(sensitivity), severity): dict(zip(RULE_FIELDS, row, strict=True))
            for sensitivity, rows in DEFAULT_TABLE.items()
            for severity, row in zip(SEVERITIES, rows, strict=True)}

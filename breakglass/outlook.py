"""What breaking glass on a group will give, said on its page before anyone presses: for the
current selection and for every choice of incident or typed severity. Each line comes from
the same decision the service applies (decide_severity, then decide_risk), so the page cannot
promise what the rule table will not give."""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from breakglass.models import Group
from risk.durations import minutes_words
from risk.models import Incident, RiskRule, Severity
from risk.rules import (
    CAPPED_SENSITIVITIES,
    UNCONFIRMED_SEVERITY_CAP,
    Path,
    decide_risk,
    decide_severity,
)


@dataclass(frozen=True)
class Outlook:
    choice: str  # what was chosen, in words
    severity: str  # the severity that picks the cell
    claimed: str  # a typed severity counted lower, or ""
    minutes: int  # how long access would last; 0 when the cell refuses self-service
    step_up: bool

    @property
    def cell(self) -> str:
        severity = self.severity.upper() or "SEV4"
        return f"counts as {severity}" if self.claimed else severity

    @property
    def access(self) -> str:
        return minutes_words(self.minutes) if self.minutes else "no self-service"

    @property
    def code(self) -> str:
        if not self.minutes:
            return "—"
        return "code" if self.step_up else "no"

    def sentence(self, *, extending: bool = False) -> str:
        if not self.minutes:
            said = ("not possible as self-service here: the owners must approve an access "
                    "request, or choose an open incident if there is one.")
        else:
            length = minutes_words(self.minutes)
            said = (f"your access is extended to {length} from now" if extending
                    else f"access for {length}")
            said += (", with a one-time code (one verified in the last 5 minutes counts)."
                     if self.step_up else ".")
        if self.claimed:
            said += (f" A {self.claimed.upper()} typed without an incident counts as "
                     f"{self.severity.upper()} here.")
        return f"With this choice: {said}"


def outlook(group: Group, *, incident: Incident | None, severity: str, rules: dict) -> Outlook:
    """What one choice gives on `group`; `rules` are the group's cells by severity."""
    decided, claimed = decide_severity(group.sensitivity, incident=incident, severity=severity)
    # "Stepped up now": the outlook says whether a code is needed rather than refusing for it.
    decision = decide_risk(Path.BREAK_GLASS, sensitivity=group.sensitivity, severity=decided,
                           claimed=claimed, stepped_up_at=timezone.now(),
                           rule=rules.get(decided or "sev4"))
    minutes = 0
    if decision.allowed:
        length = min(group.break_glass_duration, timedelta(minutes=decision.max_minutes))
        minutes = int(length.total_seconds() // 60)
    if incident is not None:
        choice = f"{incident.external_id} ({incident.get_severity_display()})"
    elif severity:
        choice = f"{severity.upper()} typed, no incident"
    else:
        choice = "No incident, no severity"
    return Outlook(choice, decision.severity, claimed, minutes, decision.step_up)


def panel_outlooks(group: Group, form, *, extending: bool) -> dict:
    """Everything the break-glass panel says about outcomes: the current selection's
    sentence, one row per choice (for the page without JavaScript), the sentences by choice
    (for the script that follows the selection), and whether typed severities are capped."""
    rules = {rule.severity: rule for rule in RiskRule.objects.filter(
        sensitivity=group.sensitivity)}
    ids = [value for value, _ in form.fields["incident"].choices if value]
    incidents = {item.external_id: item for item in Incident.objects.filter(external_id__in=ids)}
    by_incident = {key: outlook(group, incident=incidents[key], severity="", rules=rules)
                   for key in ids if key in incidents}
    by_severity = {}
    if not group.armed_by_incident:
        for severity in ["", *Severity.values]:
            by_severity[severity] = outlook(group, incident=None, severity=severity,
                                            rules=rules)
    chosen_incident, chosen_severity = _selection(form)
    current = by_incident.get(chosen_incident) or by_severity.get(chosen_severity)
    return {
        "current": current.sentence(extending=extending) if current else "",
        "rows": [*by_incident.values(), *by_severity.values()],
        "sentences": {
            "incident": {key: item.sentence(extending=extending)
                         for key, item in by_incident.items()},
            "severity": {key: item.sentence(extending=extending)
                         for key, item in by_severity.items()}},
        "capped": group.sensitivity in CAPPED_SENSITIVITIES,
        "cap": UNCONFIRMED_SEVERITY_CAP.label,
    }


def _selection(form) -> tuple[str, str]:
    if form.is_bound:
        return str(form.data.get("incident", "")), str(form.data.get("severity", ""))
    return str(form.fields["incident"].initial or ""), ""

from django import forms

from accounts.models import User
from audit.reasons import MAX_REASON_LENGTH
from breakglass.models import Group
from risk.durations import minutes_words
from risk.models import Severity
from risk.rules import typed_severity_help


def incident_choices(group: Group, *, only_linked: bool) -> tuple[list[tuple[str, str]], int]:
    """Open incidents, those linked to the group first; only those when it is armed by them."""
    from risk.incidents import open_incidents

    incidents = list(open_incidents().prefetch_related("groups"))
    linked = [item for item in incidents if group.pk in {g.pk for g in item.groups.all()}]
    others = [] if only_linked else [item for item in incidents if item not in linked]
    return [(item.external_id, str(item)) for item in linked + others], len(linked)


class IncidentFieldsMixin:
    """An incident chosen from the open ones (its severity counts), or a declared severity."""

    def add_incident_fields(self, group: Group, *, required: bool, armed: bool) -> None:
        choices, linked = incident_choices(group, only_linked=armed)
        self.fields["incident"] = forms.ChoiceField(
            label="Incident", required=required,
            choices=choices if required else [("", "— none —"), *choices],
            # An open incident linked to this group is most likely the one at hand.
            initial=choices[0][0] if linked else "",
            help_text=("Only while an incident linked to this group is open." if armed else
                       "An open incident: its severity decides what the risk rules allow."))
        self.fields["severity"] = forms.ChoiceField(
            label="Severity", required=False, choices=[("", "—"), *Severity.choices],
            help_text=typed_severity_help(group.sensitivity))


class StepUpField(forms.CharField):
    def __init__(self, **kwargs):
        super().__init__(
            label="One-time code", required=False, max_length=32, strip=True,
            widget=forms.TextInput(attrs={"autocomplete": "one-time-code",
                                          "inputmode": "numeric"}),
            help_text="From your authenticator. Needed where the risk rule asks for a step-up "
                      "and you have not verified a code in the last 5 minutes.", **kwargs)


class BreakGlassForm(IncidentFieldsMixin, forms.Form):
    reason = forms.CharField(
        label="Reason", max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to every security reviewer and owner who is alerted.",
    )
    code = StepUpField()
    drill = forms.BooleanField(
        label="This is a drill", required=False,
        help_text="Same path and alerts, labelled as a drill, for 15 minutes; opens a drill "
                  "review.")

    def __init__(self, group: Group, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_incident_fields(group, required=group.armed_by_incident,
                                 armed=group.armed_by_incident)
        self.order_fields(["reason", "incident", "severity", "code", "drill"])


class EndAccessForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=MAX_REASON_LENGTH, required=False)


class BreakGlassUsersForm(forms.Form):
    users = forms.ModelMultipleChoiceField(
        label="Break-glass users", required=False,
        queryset=User.objects.filter(is_active=True).order_by("username"),
        widget=forms.CheckboxSelectMultiple,
    )


DURATION_STEPS = [15, 30, 60, 2 * 60, 4 * 60, 8 * 60, 12 * 60, 24 * 60, 2 * 24 * 60,
                  3 * 24 * 60, 7 * 24 * 60, 14 * 24 * 60]


def duration_choices(max_minutes: int) -> list[tuple[int, str]]:
    steps = sorted({step for step in DURATION_STEPS if step <= max_minutes} | {max_minutes})
    return [(step, minutes_words(step)) for step in steps]


class RequestAccessForm(IncidentFieldsMixin, forms.Form):
    minutes = forms.TypedChoiceField(label="Duration", coerce=int,
                                     help_text="Counted from approval, not from now.")
    reason = forms.CharField(label="Reason", max_length=MAX_REASON_LENGTH,
                             widget=forms.Textarea(attrs={"rows": 3}))
    code = StepUpField()

    def __init__(self, group: Group, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["minutes"].choices = duration_choices(group.request_max_minutes)
        self.fields["minutes"].initial = min(60, group.request_max_minutes)
        self.fields["reason"].required = group.request_reason_required
        self.add_incident_fields(group, required=group.request_incident_required, armed=False)
        self.order_fields(["minutes", "incident", "severity", "reason", "code"])


class ExtensionForm(forms.Form):
    minutes = forms.TypedChoiceField(label="More time", coerce=int)
    reason = forms.CharField(label="Reason", max_length=MAX_REASON_LENGTH)

    def __init__(self, group: Group, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["minutes"].choices = duration_choices(group.request_max_minutes)
        self.fields["minutes"].initial = min(60, group.request_max_minutes)
        self.fields["reason"].required = group.request_reason_required


class DecisionForm(forms.Form):
    comment = forms.CharField(label="Comment", max_length=MAX_REASON_LENGTH, required=False,
                              widget=forms.Textarea(attrs={"rows": 2}),
                              help_text="Required to deny: the requester is told.")


class RequestSettingsForm(forms.ModelForm):
    class Meta:
        model = Group
        fields = ["requestable", "request_max_minutes", "request_reason_required",
                  "request_incident_required", "approvals_needed", "auto_approve_group",
                  "request_expiry_minutes"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["auto_approve_group"].queryset = Group.objects.exclude(
            pk=self.instance.pk).order_by("name")

    def clean(self):
        cleaned = super().clean()
        needed = cleaned.get("approvals_needed")
        owners = self.instance.owners.count() if self.instance.pk else 0
        if cleaned.get("requestable") and needed and needed > owners:
            self.add_error("approvals_needed", f"{needed} approvals need at least {needed} "
                                               f"owners; this group has {owners}.")
        return cleaned

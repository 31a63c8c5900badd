from django import forms

from audit.reasons import MAX_REASON_LENGTH
from risk.models import Severity
from risk.rules import typed_severity_help


class CodeField(forms.CharField):
    def __init__(self, **kwargs):
        super().__init__(label="One-time code", max_length=20, help_text=(
            "A fresh code from your authenticator app (or one of your backup codes)."),
            widget=forms.TextInput(attrs={"autocomplete": "one-time-code",
                                          "inputmode": "numeric"}), **kwargs)


class StartAttemptForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=MAX_REASON_LENGTH,
                             widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Every authorized user and the security reviewers see it.")
    incident = forms.ChoiceField(label="Incident", required=False)
    severity = forms.ChoiceField(
        label="Severity", required=False, choices=[("", "—"), *Severity.choices],
        help_text="Without an incident: the severity you declare (none counts as SEV4).")
    code = CodeField()
    drill = forms.BooleanField(
        label="This is a drill", required=False,
        help_text="The same path and alerts, labelled as a drill; the real credentials stay "
                  "sealed; opens a drill review.")

    def __init__(self, policy, *args, **kwargs):
        from risk.incidents import open_incidents

        super().__init__(*args, **kwargs)
        incidents = open_incidents()
        if policy.armed_by_incident:
            incidents = incidents.filter(policies=policy)
        choices = [(item.external_id, str(item)) for item in incidents]
        field = self.fields["incident"]
        field.required = policy.armed_by_incident
        field.choices = choices if policy.armed_by_incident else [("", "— none —"), *choices]
        field.help_text = ("Only while an incident linked to this policy is open."
                           if policy.armed_by_incident else
                           "An open incident: its severity decides what the risk rules allow.")
        self.fields["severity"].help_text = typed_severity_help(policy.sensitivity)


class ConfirmForm(forms.Form):
    code = CodeField()


class EnrolForm(forms.Form):
    passphrase = forms.CharField(
        label="Recovery passphrase", min_length=12, max_length=200, strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 12 characters; a few unrelated words work well. It is never "
                  "stored: write it down and keep it somewhere the servers are not.")
    again = forms.CharField(label="The same passphrase again", max_length=200, strip=False,
                            widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    code = CodeField()

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("passphrase") and cleaned.get("passphrase") != cleaned.get("again"):
            self.add_error("again", "The two passphrases differ.")
        return cleaned

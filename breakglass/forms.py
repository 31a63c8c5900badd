from django import forms

from accounts.models import User
from breakglass.models import Severity
from breakglass.services import MAX_REASON_LENGTH


class BreakGlassForm(forms.Form):
    reason = forms.CharField(
        label="Reason", max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to every security reviewer and owner who is alerted.",
    )
    incident = forms.CharField(label="Incident", max_length=200, required=False,
                               help_text="A ticket or incident reference, if there is one.")
    severity = forms.ChoiceField(label="Severity", required=False,
                                 choices=[("", "—"), *Severity.choices])


class EndAccessForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=MAX_REASON_LENGTH, required=False)


class BreakGlassUsersForm(forms.Form):
    users = forms.ModelMultipleChoiceField(
        label="Break-glass users", required=False,
        queryset=User.objects.filter(is_active=True).order_by("username"),
        widget=forms.CheckboxSelectMultiple,
    )

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm

from accounts.phone import normalize_phone


class SignInForm(AuthenticationForm):
    """Username and password; django-axes counts the failures (username + client IP)."""

    password = forms.CharField(
        label="Password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(
            {"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        )

    def clean_username(self) -> str:
        # AuthenticationForm sets max_length without its validator; an over-long name would
        # reach authenticate() and overflow django-axes' 255-character attempt record.
        username = self.cleaned_data["username"]
        if len(username) > 150:
            raise forms.ValidationError("Usernames are at most 150 characters.")
        return username


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autocapitalize": "none",
                "spellcheck": "false",
                "autofocus": True,
            }
        ),
    )


class AuthenticatorCodeForm(CodeForm):
    """A 6-digit code from the authenticator app being enrolled."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].label = "6-digit code from your app"
        self.fields["code"].widget.attrs.update({"inputmode": "numeric", "pattern": "[0-9 ]*"})

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if not (code.isdigit() and len(code) == 6):
            raise forms.ValidationError("Enter the 6 digits your authenticator app shows.")
        return code


class ChangeProofForm(forms.Form):
    """What a change to one's second factors asks for: the account password, and a current
    code unless one was verified in the last 5 minutes (at sign-in, for example)."""

    password = forms.CharField(
        label="Your password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    current_code = forms.CharField(
        label="A current code",
        required=False,
        max_length=32,
        help_text="From your current authenticator app, or an unused backup code. Not needed "
        "if you entered one in the last 5 minutes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autocapitalize": "none",
                   "spellcheck": "false"}
        ),
    )


class ReplaceAuthenticatorForm(ChangeProofForm, AuthenticatorCodeForm):
    """The proof of ChangeProofForm, then a code from the new app being enrolled."""

    field_order = ["password", "current_code", "code"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].label = "6-digit code from your new app"
        self.fields["code"].widget.attrs.pop("autofocus", None)
        self.fields["password"].widget.attrs["autofocus"] = True


class UserChangeForm(DjangoUserChangeForm):
    """Admin form: mobile numbers may be typed in any common format and are stored in E.164;
    an empty identity-provider subject is stored as none."""

    def clean_mobile(self) -> str:
        mobile = self.cleaned_data.get("mobile", "")
        return normalize_phone(mobile) if mobile else ""

    def clean_sso_subject(self) -> str | None:
        # Empty means "not linked": NULL, which the unique index allows many times over.
        return self.cleaned_data.get("sso_subject") or None

"""Passkeys (django-otp-webauthn) as a second factor and a step-up, never a sign-in alone.

The library's JSON ceremonies are kept; what differs is who may run them and what a success
means here:
- Registering a passkey needs the account page's proof first (the password and a factor
  verified in the last 5 minutes): the proof opens a 5-minute permit in the session, and the
  ceremony refuses without it. The addition is audited and the owner told on their channels.
- A passkey confirmed for a signed-in user verifies the session through the same function as
  a typed code (a new session key, a fresh step-up), audited as `auth.otp_verified`.
- The authenticator must verify the person (PIN or biometrics) every time, because a
  step-up before breaking glass rests on it; the library asks for that only without a user.
- With no `next` on the page (the break-glass form) the ceremony answers without a redirect,
  so what was typed in the form stays; the page's own script says the step-up is done.
"""

import json

from django.db import transaction
from django.http import JsonResponse
from django.urls import path
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import exceptions
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

from accounts import services


class RegistrationNotAllowed(exceptions.OTPWebAuthnApiError):
    status_code = 403
    default_detail = ("Confirm your password and a current code on the account page first; "
                      "then add the passkey within 5 minutes.")
    default_code = "passkey_registration_not_allowed"


class PermittedRegistration:
    def check_can_register(self):
        if not services.passkey_registration_allowed(self.request):
            raise RegistrationNotAllowed()


class BeginRegistration(PermittedRegistration, BeginCredentialRegistrationView):
    pass


class CompleteRegistration(PermittedRegistration, CompleteCredentialRegistrationView):
    def post(self, *args, **kwargs):
        with transaction.atomic():
            response = super().post(*args, **kwargs)
            credential = services.passkeys_of(self.request.user).get(
                pk=json.loads(response.content)["id"])
            services.record_passkey_added(self.request, credential)
        return response


class BeginAuthentication(BeginCredentialAuthenticationView):
    def post(self, *args, **kwargs):
        helper = self.get_helper()
        data, state = helper.authenticate_begin(user=self.get_user(),
                                                require_user_verification=True)
        self.request.session["otp_webauthn_authentication_state"] = state
        return JsonResponse(data)


class CompleteAuthentication(CompleteCredentialAuthenticationView):
    def complete_auth(self, device):
        services.passkey_verified(self.request, device)

    def get_success_url(self):
        # No `next` sent: stay on the page (the break-glass form keeps what was typed).
        return self.get_redirect_url()


app_name = "otp_webauthn"

# The library's URL names, which its template tags and scripts reverse, on these views.
urlpatterns = [
    path("registration/begin/", BeginRegistration.as_view(),
         name="credential-registration-begin"),
    path("registration/complete/", CompleteRegistration.as_view(),
         name="credential-registration-complete"),
    path("authentication/begin/", BeginAuthentication.as_view(),
         name="credential-authentication-begin"),
    path("authentication/complete/", CompleteAuthentication.as_view(),
         name="credential-authentication-complete"),
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
         name="js-i18n-catalog"),
]

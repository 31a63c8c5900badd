from django.contrib.auth.views import LogoutView
from django.urls import path

from accounts import sso, views

app_name = "accounts"

urlpatterns = [
    path("", views.security, name="security"),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("two-factor/", views.two_factor, name="two-factor"),
    path("two-factor/verify/", views.verify, name="verify"),
    path("two-factor/backup-codes/", views.backup_codes, name="backup-codes"),
    path("sso/start/", sso.SsoStartView.as_view(), name="sso-start"),
    path("sso/callback/", sso.SsoCallbackView.as_view(), name="sso-callback"),
    path("passkeys/add/", views.add_passkey, name="passkey-add"),
    path("passkeys/<int:pk>/remove/", views.remove_passkey, name="passkey-remove"),
]

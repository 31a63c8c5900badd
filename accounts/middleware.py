import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from accounts.services import expire_session, has_confirmed_device


class AccessPolicyMiddleware:
    """Deny by default: a URL is public only if its name is in settings.PUBLIC_URLS; the
    sign-in steps (SIGN_IN_STAGE_URLS) need a password-authenticated user; everything else
    needs a user verified by a second factor. Views then check their own role."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        name = request.resolver_match.view_name
        if name in settings.PUBLIC_URLS:
            return None
        if request.resolver_match.namespace in settings.TOKEN_AUTH_NAMESPACES:
            return None
        user = request.user
        if not user.is_authenticated:
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": "Authentication required."}, status=401)
            return redirect_to_login(request.get_full_path())
        if name in settings.SIGN_IN_STAGE_URLS or user.is_verified():
            return None
        step = "accounts:verify" if has_confirmed_device(user) else "accounts:two-factor"
        return redirect(f"{reverse(step)}?{urlencode({'next': request.get_full_path()})}")


class SessionLimitMiddleware:
    """Idle and absolute session limits for every user whose action can release access or
    secrets (User.has_break_glass_rights, SPEC §2.1). The rights are looked up only once a
    limit has passed, so an ordinary request costs no query here."""

    SIGNED_IN_AT = "signed_in_at"
    SEEN_AT = "seen_at"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            now = time.time()
            session = request.session
            signed_in_at = session.setdefault(self.SIGNED_IN_AT, now)
            seen_at = session.get(self.SEEN_AT, now)
            limit = self._passed_limit(now, signed_in_at, seen_at)
            if limit and user.has_break_glass_rights():
                expire_session(request, limit=limit)
                messages.info(request, "Your session ended. Sign in again to continue.")
                return redirect_to_login(request.get_full_path())
            # Writing the session on every request would cost a query each time; a minute's
            # resolution is plenty for a 15-minute idle limit.
            if now - seen_at >= 60 or self.SEEN_AT not in session:
                session[self.SEEN_AT] = now
        return self.get_response(request)

    @staticmethod
    def _passed_limit(now: float, signed_in_at: float, seen_at: float) -> str:
        if now - signed_in_at > settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds():
            return "absolute"
        if now - seen_at > settings.SESSION_IDLE_TIMEOUT.total_seconds():
            return "idle"
        return ""

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django_otp.admin import OTPAdminSite


class BreakglassAdminSite(OTPAdminSite):
    """The admin, for staff verified by a second factor only (django-otp's OTPAdminSite).

    Its own login page is replaced by the one sign-in flow of the app, so axes, the second
    factor and the session rules apply to the admin exactly as to every other page.
    """

    name = "admin"
    site_header = "Breakglass administration"
    site_title = "Breakglass admin"
    index_title = "Administration"

    def __init__(self, name: str = "admin"):
        super().__init__(name)

    def get_urls(self):
        from django.urls import path

        from review.dashboard_urls import dashboard_urls
        from review.evidence_admin import evidence_view

        return [
            path("evidence/<str:kind>/<int:object_id>.<str:fmt>", self.admin_view(evidence_view),
                 name="evidence"),
            *dashboard_urls(self),
            *super().get_urls(),
        ]

    def login(self, request, extra_context=None):
        if request.user.is_authenticated and request.user.is_verified():
            raise PermissionDenied("Your account has no access to the administration site.")
        return redirect_to_login(request.GET.get("next", "/admin/"))

from collections.abc import Callable
from functools import wraps

from django.contrib.admin import ModelAdmin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django_otp.admin import OTPAdminSite

# Actions of third-party admins that change state but declare no permission of their own.
THIRD_PARTY_ACTION_PERMISSIONS = {
    "cleanup_expired_attempts": ("delete",),  # django-axes: deletes lockout records
    "resubmit_task": ("change",),  # django-q2: queues a finished task again
}


def with_permissions(func: Callable, permissions: tuple) -> Callable:
    @wraps(func)
    def action(model_admin, request, queryset):
        return func(model_admin, request, queryset)

    action.allowed_permissions = permissions
    return action


def guarded(admin_class: type[ModelAdmin]) -> type[ModelAdmin]:
    """`admin_class` refusing (403, audited) the actions a user may not run, with the
    permissions above declared on third-party actions."""
    from audit.admin import GuardedActionsMixin

    if issubclass(admin_class, GuardedActionsMixin):
        return admin_class
    attrs = {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__}
    if admin_class.actions is not None:
        actions = []
        for action in admin_class.actions:
            name = action if isinstance(action, str) else action.__name__
            permissions = THIRD_PARTY_ACTION_PERMISSIONS.get(name)
            if permissions and isinstance(action, str):
                attrs[name] = with_permissions(getattr(admin_class, name), permissions)
            elif permissions:
                action = with_permissions(action, permissions)
            actions.append(action)
        attrs["actions"] = actions
    return type(admin_class.__name__, (GuardedActionsMixin, admin_class), attrs)


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

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every ModelAdmin, third-party ones included, refuses what a user may not run."""
        super().register(model_or_iterable, guarded(admin_class or ModelAdmin), **options)

    def get_urls(self):
        from django.urls import path

        from reports.dashboard_urls import dashboard_urls
        from reports.evidence_admin import evidence_view

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

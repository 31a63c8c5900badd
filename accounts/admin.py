from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from simple_history.admin import SimpleHistoryAdmin

from accounts.forms import UserChangeForm
from accounts.models import BackupCodeDevice, TOTPDevice, User


@admin.register(User)
class UserAdmin(SimpleHistoryAdmin, DjangoUserAdmin):
    form = UserChangeForm
    fieldsets = (
        *DjangoUserAdmin.fieldsets[:1],
        ("Personal info", {"fields": ("first_name", "last_name", "email", "mobile")}),
        *DjangoUserAdmin.fieldsets[2:],
    )
    list_display = ("username", "email", "mobile", "is_staff", "is_active", "last_login")
    search_fields = ("username", "email", "first_name", "last_name", "mobile")
    actions = ["reopen_after_review"]

    @admin.action(description="Reopen accounts locked by an abort link (after their review)",
                  permissions=["change"])
    def reopen_after_review(self, request, queryset):
        from review.abort import AbortRefused, reopen_account

        for user in queryset:
            try:
                reopened = reopen_account(user, actor=request.user, request=request)
            except AbortRefused as refused:
                messages.error(request, f"{user}: {refused}")
                continue
            if reopened:
                messages.success(request, f"{user} can sign in again.")
            else:
                messages.info(request, f"{user} was not locked.")


@admin.register(BackupCodeDevice)
class BackupCodeDeviceAdmin(admin.ModelAdmin):
    """Codes are never shown (only their keyed hashes exist); deleting the set resets it."""

    list_display = ("user", "name", "confirmed", "unused")
    search_fields = ("user__username",)
    fields = ("user", "name", "confirmed")
    readonly_fields = ("user",)

    @admin.display(description="Unused codes")
    def unused(self, device: BackupCodeDevice) -> int:
        return device.unused_count()

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(admin.ModelAdmin):
    """The seed is never shown (it is stored encrypted); deleting a lost phone's device makes
    its owner enrol again after the password and a backup code."""

    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username",)
    fields = ("user", "name", "confirmed", "created_at", "last_used_at")
    readonly_fields = ("user", "confirmed", "created_at", "last_used_at")

    def has_add_permission(self, request) -> bool:
        return False

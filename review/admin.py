"""Reviews in the admin: read-only here (the outcome is recorded on /review/<id>/, where the
reviewer's own use is refused and the event audited). Also the user admin's action that
reopens an account an abort link locked, once its review is closed."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import User
from audit.admin import ReadOnlyAdmin
from review.abort import AbortRefused, reopen_account
from review.models import AbortUse, Review


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("pk", "path", "subject_label", "what", "is_drill", "opened_at", "outcome",
                    "reviewed_by", "escalated_at")
    list_filter = ("outcome", "path", "is_drill")
    search_fields = ("subject_label", "notes")
    date_hierarchy = "opened_at"
    list_select_related = ("group", "policy", "website", "reviewed_by")
    readonly_fields = ("review_page", *(field.name for field in Review._meta.fields))

    @admin.display(description="Review it")
    def review_page(self, review: Review) -> str:
        return format_html('<a class="button" href="{}">Open the review page</a>',
                           reverse("review:detail", args=[review.pk]))


@admin.register(AbortUse)
class AbortUseAdmin(ReadOnlyAdmin):
    list_display = ("grant", "used_by", "used_at")
    list_select_related = ("grant", "used_by")


@admin.action(description="Reopen accounts locked by an abort link (after their review)",
              permissions=["change"])
def reopen_after_review(model_admin, request, queryset):
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


# The user admin is accounts' (registered first: accounts comes before review in
# INSTALLED_APPS); reopening after a review belongs to this app, so the action is added here.
user_admin = admin.site.get_model_admin(User)
user_admin.actions = [*user_admin.actions, reopen_after_review]

"""Reviews in the admin: read-only here (the outcome is recorded on /review/<id>/, where the
reviewer's own use is refused and the event audited)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from audit.admin import ReadOnlyAdmin
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

from django.contrib import admin
from django.forms import BaseInlineFormSet
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from oncall.models import Schedule, Shift
from oncall.services import Slot, ended_shift_slots, first_overlap


class ShiftInlineFormSet(BaseInlineFormSet):
    """Refuses what the import refuses: a user's shifts overlapping one another (or an ended
    shift, which the inline does not show) and shifts added or moved into the past."""

    def clean(self):
        super().clean()
        now = timezone.now()
        slots = [slot for slot in map(self._slot, range(len(self.forms))) if slot is not None]
        for slot in slots:
            form = self.forms[slot.position]
            if form.has_changed() and slot.ends_at <= now:
                form.add_error("ends_at", "This shift has already ended; ended shifts are "
                                          "the record and are not changed.")
        overlap = first_overlap([*slots, *ended_shift_slots(self._ended_shifts(slots, now))])
        if overlap is not None:
            blamed, other = overlap
            self.forms[blamed.position].add_error(
                "starts_at", f"Overlaps {other.label} for {blamed.user.get_username()}.")

    def _slot(self, position: int) -> Slot | None:
        """The shift a row will be, if it is kept and otherwise valid."""
        form = self.forms[position]
        data = form.cleaned_data if form.is_valid() else {}
        if not data or data.get("DELETE") or None in (data.get("user"), data.get("starts_at"),
                                                      data.get("ends_at")):
            return None
        return Slot(position, f"row {position + 1}", data["user"], data["starts_at"],
                    data["ends_at"])

    def _ended_shifts(self, slots: list[Slot], now):
        if self.instance.pk is None or not slots:
            return Shift.objects.none()
        shown = [form.instance.pk for form in self.forms if form.instance.pk]
        return self.instance.shifts.filter(
            ends_at__lte=now, ends_at__gt=min(slot.starts_at for slot in slots),
            user__in={slot.user.pk for slot in slots},
        ).exclude(pk__in=shown).select_related("user")


class ShiftInline(admin.TabularInline):
    """The coming shifts only: ended ones are the record, kept in each shift's history."""

    model = Shift
    formset = ShiftInlineFormSet
    fields = ("user", "starts_at", "ends_at")
    autocomplete_fields = ("user",)
    extra = 1

    def get_queryset(self, request):
        return super().get_queryset(request).coming().select_related("user")


@admin.register(Schedule)
class ScheduleAdmin(SimpleHistoryAdmin):
    list_display = ("name", "slug", "on_call", "created_at")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (ShiftInline,)

    @admin.display(description="On call now")
    def on_call(self, schedule: Schedule) -> str:
        return ", ".join(user.get_username() for user in schedule.on_call_now()) or "—"

"""The admin dashboard (SPEC §2.8): figures, a chart of uses per month drawn as SVG on the
server (readable without JavaScript), the drills that are due, and the CSV exports.

Wired into the admin site with `admin_urls(site)`, which wraps each view in
`site.admin_view` (staff, verified second factor); the views add their own permission check.
"""

import math
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from audit.admin import refuse
from reports import reports
from review.models import Review

PATH_COLOURS = {  # Series colours only, never a state: each also has its word in the legend.
    Review.Path.GROUP: "#2f5d8a",
    Review.Path.API: "#7fa7cf",
    Review.Path.QUORUM: "#5b4a8b",
    Review.Path.BACKUP: "#9a8c6a",
}
PATH_SHORT = {Review.Path.GROUP: "Group", Review.Path.API: "API",
              Review.Path.QUORUM: "Quorum", Review.Path.BACKUP: "Backup"}
WIDTH, HEIGHT = 600, 300
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 40, 48


def may_see_dashboard(user) -> bool:
    return user.is_active and (
        user.is_superuser or (user.is_staff and user.has_perm("review.view_review")))


def reviewers_only(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not may_see_dashboard(request.user):
            refuse(request, "the dashboard (it needs the reviews' view permission)",
                   view=view.__name__)
        return view(request, *args, **kwargs)

    return wrapped


@reviewers_only
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    months = reports.uses_per_month(now)
    drills = reports.drills(now)
    median = reports.median_time_to_review()
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "now": now,
        "months": months,
        "chart": chart(months),
        "paths": reports.uses_per_path(),
        "month_rows": [{"start": month.start, "counts": list(month.counts.values()),
                        "total": month.total} for month in months],
        "target_tables": [
            ("Groups broken into most", reports.top_targets("group"), "No group use yet."),
            ("Recovery policies used most", reports.top_targets("policy"),
             "No quorum recovery yet."),
            ("Websites backed up in an emergency most", reports.top_targets("website"),
             "No emergency backup yet."),
        ],
        "median": median,
        "median_text": duration_text(median),
        "reviews": reports.open_reviews(),
        "grants": reports.active_grants(now),
        "failed_deliveries": reports.failed_deliveries(),
        "connector_rows": reports.connector_health(),
        "drills": drills,
        "drills_due": sum(row.due for row in drills),
        "drill_max_days": reports.DRILL_MAX_AGE.days,
    }
    return render(request, "review/dashboard.html", context)


@reviewers_only
def uses_csv(request: HttpRequest) -> StreamingHttpResponse:
    return _csv_response(reports.uses_csv(), "uses")


@reviewers_only
def reviews_csv(request: HttpRequest) -> StreamingHttpResponse:
    return _csv_response(reports.reviews_csv(), "reviews")


def _csv_response(lines, name: str) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="breakglass-{name}-{stamp}.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def admin_urls(site: admin.AdminSite) -> list:
    """The dashboard's URLs for `site.get_urls()`, each behind `site.admin_view`."""
    return [
        path("dashboard/", site.admin_view(dashboard), name="review_dashboard"),
        path("dashboard/uses.csv", site.admin_view(uses_csv), name="review_uses_csv"),
        path("dashboard/reviews.csv", site.admin_view(reviews_csv), name="review_reviews_csv"),
    ]


def duration_text(value: timedelta | None) -> str:
    """"2 d 4 h", "3 h 20 min", "12 min": short enough for a card."""
    if value is None:
        return ""
    minutes = max(round(value.total_seconds() / 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


# --- the chart -----------------------------------------------------------------------------------

def nice_ceiling(value: int) -> int:
    """The top of the y axis: four gridlines, each a step of 1, 2 or 5 × 10^k uses."""
    needed = max(value / 4, 1)
    power = 10 ** math.floor(math.log10(needed))
    step = next(step * power for step in (1, 2, 5, 10) if step * power >= needed)
    return 4 * step


def chart(months: list[reports.Month]) -> dict:
    """Geometry of a stacked bar chart of uses per month by path, in SVG user units."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((month.total for month in months), default=0))
    slot = plot_w / max(len(months), 1)
    bar_w = slot * 0.62
    scale = plot_h / top
    bars = []
    for index, month in enumerate(months):
        x = LEFT + index * slot + (slot - bar_w) / 2
        bars.append({"month": month, "x": round(x, 1), "centre": round(x + bar_w / 2, 1),
                     "segments": _segments(month, HEIGHT - BOTTOM, scale),
                     "total_y": round(HEIGHT - BOTTOM - month.total * scale - 6, 1),
                     "label": month.start.strftime("%b"),
                     "year": month.start.strftime("%Y")
                     if index == 0 or month.start.month == 1 else ""})
    ticks = [{"value": top * i // 4, "y": round(HEIGHT - BOTTOM - plot_h * i / 4, 1)}
             for i in range(5)]
    legend = [{"label": PATH_SHORT[value], "colour": PATH_COLOURS[value], "x": LEFT + i * 110}
              for i, value in enumerate(Review.Path.values)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
            "baseline": HEIGHT - BOTTOM, "bar_width": round(bar_w, 1), "bars": bars,
            "ticks": ticks, "legend": legend, "max": top,
            "first": months[0].start if months else None,
            "last": months[-1].start if months else None,
            "total": sum(month.total for month in months),
            "busiest": max(months, key=lambda month: month.total, default=None)}


def _segments(month: reports.Month, baseline: float, scale: float) -> list[dict]:
    segments, y = [], baseline
    for value, label in Review.Path.choices:
        count = month.counts.get(value, 0)
        if count:
            height = count * scale
            y -= height
            segments.append({"y": round(y, 1), "height": round(height, 1), "count": count,
                             "label": label, "colour": PATH_COLOURS[value]})
    return segments

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from breakglass.timeline import events_timeline_items, grant_timeline_items
from review import abort, services
from review.forms import ReviewForm
from review.models import Review


def _reviewer_only(request: HttpRequest) -> None:
    if not services.may_review(request.user):
        raise PermissionDenied("Reviews are for security reviewers.")


@require_GET
def review_list(request: HttpRequest) -> HttpResponse:
    _reviewer_only(request)
    related = ("group", "policy", "website", "reviewed_by")
    open_reviews = Review.objects.filter(outcome="").select_related(*related).order_by(
        "opened_at")
    closed = Review.objects.exclude(outcome="").select_related(*related).order_by(
        "-reviewed_at")[:50]
    return render(request, "review/list.html", {"open_reviews": open_reviews,
                                                "closed": closed})


@require_http_methods(["GET", "POST"])
def review_detail(request: HttpRequest, review_id: int) -> HttpResponse:
    _reviewer_only(request)
    review = (Review.objects.select_related("group", "policy", "website", "subject",
                                            "reviewed_by", "grant__group", "grant__user",
                                            "attempt__policy", "emergency_session__website")
              .filter(pk=review_id).first())
    if review is None:
        raise Http404("No such review.")
    form = ReviewForm(review, request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.close_review(review, actor=request.user, request=request,
                                      **form.cleaned_data)
            except services.InvalidReview as invalid:
                form.add_error(invalid.field if invalid.field in form.fields else None,
                               str(invalid))
                status = 400
            except services.ReviewError as refused:
                form.add_error(None, str(refused))
                status = refused.status
            else:
                messages.success(request, f"Review #{review.pk} closed.")
                return redirect("review:list")
        else:
            status = 400
    if review.grant is not None:
        items = grant_timeline_items(review.grant)
    else:
        items = events_timeline_items(review.attempt, review.emergency_session
                                      and review.emergency_session.website)
    part = services.part_in_use(review, request.user)
    return render(request, "review/detail.html", {
        "review": review, "form": form, "items": items, "part_in_use": part}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def abort_page(request: HttpRequest, token: str) -> HttpResponse:
    """The alert's "Not us — revoke and lock": a confirmation page, then a POST."""
    try:
        if request.method == "POST":
            grant = abort.abort(token, actor=request.user, request=request)
            return render(request, "review/abort_done.html", {"grant": grant})
        grant = abort.check(token, actor=request.user, request=request)
    except abort.AbortRefused as refused:
        return render(request, "review/abort_refused.html", {"why": str(refused)},
                      status=refused.status)
    return render(request, "review/abort_confirm.html", {"grant": grant})

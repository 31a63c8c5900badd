"""The public emergency page and the narrow session it opens (SPEC §2.6). Thin adapters over
backups/services.py and backups/jobs.py.

The pages are public (settings.PUBLIC_URLS); an emergency session is not a sign-in: the
browser stays anonymous everywhere else, and these views accept only the one website the
session was opened for, until its window ends. Every request in a session is logged."""

import logging
from functools import wraps

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from backups import jobs, services, throttle
from backups.forms import AddressForm, CodeForm
from backups.models import BackupJob

CHALLENGE_KEY = "emergency_challenge"
SESSION_KEY = "emergency_session"
logger = logging.getLogger("breakglass.emergency")


def throttled_per_client(view):
    """Send code and Verify from one client address are limited per minute: 429 with
    Retry-After beyond it, before any website or code is looked at."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST" and throttle.over_limit(request):
            services.refuse_throttled(request)
            response = render(request, "emergency/throttled.html", status=429)
            response["Retry-After"] = str(throttle.WINDOW_SECONDS)
            return response
        return view(request, *args, **kwargs)

    return wrapper


@never_cache
@require_http_methods(["GET", "POST"])
@throttled_per_client
def start(request: HttpRequest) -> HttpResponse:
    form = AddressForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        request.session[CHALLENGE_KEY] = services.send_code(form.cleaned_data["address"],
                                                            request=request)
        return redirect("emergency:verify")
    return render(request, "emergency/start.html", {"form": form},
                  status=400 if form.errors else 200)


@never_cache
@require_http_methods(["GET", "POST"])
@throttled_per_client
def verify(request: HttpRequest) -> HttpResponse:
    if CHALLENGE_KEY not in request.session:
        return redirect("emergency:start")
    form = CodeForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            session = services.verify_code(request.session[CHALLENGE_KEY],
                                           form.cleaned_data["code"], request=request)
        except services.VerificationFailed:
            error = ("That code is not right, or it is no longer valid. Check the latest "
                     "message, or ask for a new code.")
        else:
            request.session.cycle_key()
            request.session.pop(CHALLENGE_KEY, None)
            request.session[SESSION_KEY] = session.pk
            return redirect("emergency:session")
    status = 400 if error or form.errors else 200
    return render(request, "emergency/verify.html", {"form": form, "error": error},
                  status=status)


def _session_or_none(request):
    session = services.open_session(request.session.get(SESSION_KEY))
    if session is not None:
        logger.info("emergency session %s: %s %s", session.pk, request.method, request.path)
    return session


@never_cache
def session_page(request: HttpRequest) -> HttpResponse:
    session = _session_or_none(request)
    if session is None:
        request.session.pop(SESSION_KEY, None)
        return render(request, "emergency/ended.html", status=403)
    job = session.website.backups.exclude(status=BackupJob.Status.DELETED).first()
    context = {"session": session, "website": session.website, "job": job,
               "now": timezone.now(),
               "refresh": job is not None and job.status in BackupJob.IN_FLIGHT}
    return render(request, "emergency/session.html", context)


@require_POST
def start_backup(request: HttpRequest) -> HttpResponse:
    session = _session_or_none(request)
    if session is None:
        return render(request, "emergency/ended.html", status=403)
    _, joined = jobs.start_backup(session, request=request)
    messages.info(request, "A backup was already running: you are following it." if joined
                  else "Backup started.")
    return redirect("emergency:session")


def download(request: HttpRequest, job_id: int) -> HttpResponse:
    session = _session_or_none(request)
    if session is None:
        return render(request, "emergency/ended.html", status=403)
    job = session.website.backups.filter(pk=job_id, status=BackupJob.Status.COMPLETE).first()
    if job is None:
        raise Http404("No such backup.")
    archive = jobs.open_archive(job)
    jobs.record_download(job, session, request=request)
    response = FileResponse(archive, as_attachment=True,
                            filename=f"{session.website.address}-backup-{job.pk}.tar.gz")
    response["X-Checksum-SHA256"] = job.sha256
    return response


@require_POST
def end(request: HttpRequest) -> HttpResponse:
    session = _session_or_none(request)
    if session is not None:
        services.end_session(session, reason="the owner ended the session", request=request)
    request.session.flush()
    return render(request, "emergency/ended.html")

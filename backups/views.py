"""The public emergency page and the narrow session it opens (SPEC §2.6). Thin adapters over
backups/services.py and backups/jobs.py.

The pages are public (settings.PUBLIC_URLS); an emergency session is not a sign-in: the
browser stays anonymous everywhere else, and these views accept only the one website the
session was opened for, until its window ends. Every request in a session is logged."""

import logging
from functools import wraps
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from audit.catalogue import ActorType, EventKind
from audit.models import AuditEvent
from backups import jobs, services, site_access, throttle
from backups.forms import AddressForm, CodeForm
from backups.models import BackupJob, EmergencySession, Website

CHALLENGE_KEY = "emergency_challenge"
ADDRESS_KEY = "emergency_address"
SESSION_KEY = "emergency_session"
# The hand-over sheet names the kind of database, never the website's URL (it holds a password).
DATABASE_KINDS = {"sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql",
                  "pgsql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
DATABASE_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL"}
RESTORE_DATABASE_URLS = {
    "sqlite": "sqlite:////path/to/new/database.sqlite3",
    "postgresql": "postgres://USER:PASSWORD@HOST:5432/NEW_DATABASE",
    "mysql": "mysql://USER:PASSWORD@HOST:3306/NEW_DATABASE",
}
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
    if request.method == "GET":
        if _session_or_none(request) is not None:
            return redirect("emergency:session")  # the owner came back: no new code needed
        request.session.pop(SESSION_KEY, None)
    form = AddressForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        address = services.normalize_address(form.cleaned_data["address"])
        request.session[ADDRESS_KEY] = address
        request.session[CHALLENGE_KEY] = services.send_code(address, request=request)
        return redirect("emergency:verify")
    return render(request, "emergency/start.html", {"form": form, "step": 1},
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
            request.session.pop(ADDRESS_KEY, None)
            request.session[SESSION_KEY] = session.pk
            return redirect("emergency:session")
    status = 400 if error or form.errors else 200
    context = {"form": form, "error": error, "step": 2,
               "address": request.session.get(ADDRESS_KEY, "")}
    return render(request, "emergency/verify.html", context, status=status)


@never_cache
@require_POST
@throttled_per_client
def new_code(request: HttpRequest) -> HttpResponse:
    """Send a new code for the address typed earlier; the browser then holds only the new
    challenge. The answer is the same whether or not a code went out (Q6)."""
    address = request.session.get(ADDRESS_KEY)
    if not address or CHALLENGE_KEY not in request.session:
        return redirect("emergency:start")
    request.session[CHALLENGE_KEY] = services.send_code(address, request=request)
    messages.success(request, f"If {address} is registered for emergency access, a new code "
                              "is on its way. Use the code in the newest message.")
    return redirect("emergency:verify")


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
    return render(request, "emergency/session.html", _session_context(session))


def _session_context(session: EmergencySession) -> dict:
    """What the session page shows: the latest backup, whether it was made in this window
    (then Start backup is hidden), and whether this session downloaded it (then what next)."""
    job = session.website.backups.exclude(status=BackupJob.Status.DELETED).first()
    ready = job is not None and job.status == BackupJob.Status.COMPLETE
    downloaded = _downloaded_jobs(session)
    now = timezone.now()
    return {"session": session, "website": session.website, "job": job, "now": now,
            "refresh": job is not None and job.status in BackupJob.IN_FLIGHT,
            "fresh": ready and job.finished_at >= session.started_at,
            "handed_over": ready and job.pk in downloaded,
            "step": 4 if ready or downloaded else 3,
            "expires_iso": session.expires_at.isoformat(timespec="seconds"),
            "now_iso": now.isoformat(timespec="seconds")}


def _downloaded_jobs(session: EmergencySession) -> set:
    """The backups this session downloaded, read from the audit trail: true whichever browser
    or device holds the session."""
    events = AuditEvent.objects.filter(kind=EventKind.BACKUP_DOWNLOADED,
                                       actor_type=ActorType.WEBSITE_OWNER,
                                       actor_id=str(session.pk))
    return {data.get("job") for data in events.values_list("data", flat=True)}


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
    job = _complete_job(session, job_id)
    archive = jobs.open_archive(job)
    jobs.record_download(job, session, request=request)
    response = FileResponse(archive, as_attachment=True,
                            filename=archive_file_name(session.website, job))
    # From the shared store the stream cannot tell its own length: the job knows it.
    response["Content-Length"] = str(job.size)
    response["X-Checksum-SHA256"] = job.sha256
    return response


def _complete_job(session: EmergencySession, job_id: int) -> BackupJob:
    """A complete backup of the session's own website, or 404 (another website's, a failed
    or a deleted one)."""
    job = session.website.backups.filter(pk=job_id, status=BackupJob.Status.COMPLETE).first()
    if job is None:
        raise Http404("No such backup.")
    return job


def archive_file_name(website: Website, job: BackupJob) -> str:
    return f"{website.address}-backup-{job.pk}.tar.gz"


@never_cache
def handover(request: HttpRequest, job_id: int) -> HttpResponse:
    """A printable sheet for the new manager: the file, its SHA-256 and the commands that check
    and restore it."""
    session = _session_or_none(request)
    if session is None:
        return render(request, "emergency/ended.html", status=403)
    job = _complete_job(session, job_id)
    kind = database_kind(session.website)
    context = {"session": session, "website": session.website, "job": job, "step": 4,
               "file_name": archive_file_name(session.website, job),
               "database_label": DATABASE_LABELS.get(kind, "none"),
               "restore_database_url": RESTORE_DATABASE_URLS.get(kind, "")}
    return render(request, "emergency/handover.html", context)


def database_kind(website: Website) -> str | None:
    """"sqlite", "postgresql" or "mysql" from the scheme of the website's database URL (a
    confirmed WordPress site's is MariaDB/MySQL); None without one (or with a scheme the backup
    does not take). No wp-config.php is read here: that happens at backup time."""
    if website.wordpress_settings:
        return "mysql"
    url = site_access.database_url(website)
    if not url:
        return None
    try:
        return DATABASE_KINDS.get(urlsplit(url).scheme.lower())
    except ValueError:
        return None


@never_cache
@require_http_methods(["GET", "POST"])
def end(request: HttpRequest) -> HttpResponse:
    """GET asks first; POST ends the session and says so, naming the website it was for."""
    session = _session_or_none(request)
    if request.method == "GET":
        if session is None:
            request.session.pop(SESSION_KEY, None)
            return render(request, "emergency/ended.html", status=403)
        return render(request, "emergency/end.html", _session_context(session))
    address = ""
    if session is not None:
        services.end_session(session, reason="the owner ended the session", request=request)
        address = session.website.address
    request.session.flush()
    return render(request, "emergency/ended.html", {"ended_address": address})

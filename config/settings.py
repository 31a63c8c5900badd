"""Breakglass settings, read from the environment (see .env.example for every variable).

ENVIRONMENT=production (the default) is the safe mode: it refuses to start with DEBUG on or
without a strong SECRET_KEY, and turns on every transport-security setting. `make run` sets
ENVIRONMENT=development for plain-HTTP use on 127.0.0.1.
"""

import base64
import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
# A source checkout has manage.py beside config/; an installed copy (site-packages) has not.
IN_CHECKOUT = (BASE_DIR / "manage.py").is_file()

env = environ.Env()


def environment_file() -> Path | None:
    """BREAKGLASS_ENV_FILE when set (an installed copy has no checkout to hold a .env), else the
    checkout's .env. Variables already in the environment win over the file's, so systemd's
    EnvironmentFile= works as well."""
    named = os.environ.get("BREAKGLASS_ENV_FILE", "")
    if named:
        path = Path(named).resolve()
        if not os.access(path, os.R_OK) or not path.is_file():
            raise ImproperlyConfigured(f"BREAKGLASS_ENV_FILE: cannot read the file {named!r}.")
        return path
    return BASE_DIR / ".env" if IN_CHECKOUT else None


ENV_FILE = environment_file()
if ENV_FILE:
    environ.Env.read_env(ENV_FILE)


def data_folder() -> Path:
    """VAR_DIR: the SQLite database, audit checkpoints, backups and collected static files.

    A checkout keeps them in its var/. An installed copy refuses to guess a place: a default
    that differed between the service and a command run by hand would open a second, empty
    database and audit chain beside the real ones. deploy/'s units set /var/lib/breakglass."""
    named = env.str("VAR_DIR", default="")
    if not named and IN_CHECKOUT:
        return BASE_DIR / "var"
    if not named or not Path(named).is_absolute():
        raise ImproperlyConfigured(
            "VAR_DIR must name an absolute folder for Breakglass's data (for example "
            "VAR_DIR=/var/lib/breakglass): an installed copy has no folder of its own.")
    return Path(named)


VAR_DIR = data_folder()

DEVELOPMENT_SECRET_KEY = "insecure-development-key-never-use-in-production"  # noqa: S105

ENVIRONMENT = env.str("ENVIRONMENT", default="production")
if ENVIRONMENT not in {"production", "development", "test"}:
    raise ImproperlyConfigured("ENVIRONMENT must be production, development or test.")
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off when ENVIRONMENT=production.")
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY is missing, the development default or too weak: set 50+ random "
            "characters (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )

DEVELOPMENT_AUDIT_KEY = "development-audit-key-never-use-in-production"
AUDIT_HMAC_KEY = env.str("AUDIT_HMAC_KEY", default="" if PRODUCTION else DEVELOPMENT_AUDIT_KEY)
if PRODUCTION and len(AUDIT_HMAC_KEY) < 32:
    raise ImproperlyConfigured(
        "AUDIT_HMAC_KEY is missing or shorter than 32 characters: it seals the audit trail "
        "and must come from the environment, never the database."
    )


def is_field_key(value: str) -> bool:
    """The urlsafe-base64 text of exactly 32 bytes, as recovery.crypto.generate_field_key()."""
    try:
        decoded = base64.urlsafe_b64decode(value.encode("ascii"))
    except ValueError:
        return False
    return len(decoded) == 32 and base64.urlsafe_b64encode(decoded).decode("ascii") == value


# Emergency credentials at rest (recovery.crypto): the first key encrypts and every key decrypts,
# so a rotation prepends a new key, re-encrypts the fields, then drops the old key.
# The development key decodes to "development-field-key-never-prod"; production refuses it.
DEVELOPMENT_FIELD_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQtZmllbGQta2V5LW5ldmVyLXByb2Q="
FIELD_ENCRYPTION_KEYS = [
    key.strip() for key in env.list("FIELD_ENCRYPTION_KEY", default=[]) if key.strip()
] or ([] if PRODUCTION else [DEVELOPMENT_FIELD_ENCRYPTION_KEY])
if (
    not FIELD_ENCRYPTION_KEYS
    or not all(is_field_key(key) for key in FIELD_ENCRYPTION_KEYS)
    or (PRODUCTION and DEVELOPMENT_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEYS)
):
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEY is missing, malformed or the development key: set one or more "
        "comma-separated urlsafe-base64 32-byte keys (the first encrypts, all decrypt). "
        "Generate one with: python -c 'import base64, os; "
        "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _passkey_origins(site_url: str) -> list[str]:
    parts = urlsplit(site_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname and _is_ip_address(parts.hostname):
        port = f":{parts.port}" if parts.port else ""
        # Browsers hold no passkey for an IP address; the demo's twin on localhost may.
        return [f"{parts.scheme}://localhost{port}"]
    return [origin]

INSTALLED_APPS = [
    "config.apps.BreakglassAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    # Passkeys, as a second factor and a step-up only (never a sign-in on their own).
    "django_otp_webauthn",
    # Not django_otp.plugins.otp_totp: its table keeps seeds in plaintext. Authenticator apps
    # are accounts.TOTPDevice, whose seed is encrypted.
    "axes",
    "simple_history",
    # Before django_q: audit's `qcluster` command replaces django-q2's own.
    "audit",
    "django_q",
    # Only for its bundled Swagger UI files: the API docs page loads no script from a CDN.
    "ninja",
    "accounts",
    "oncall",
    "recovery",
    "breakglass",
    "backups",
    "risk",
    "review",
    "reports",
    "scim",
    # The API's own tables (idempotency keys); its routes are mounted by config/urls.py.
    "api",
    # Responders' tools: Slack buttons, PagerDuty and Opsgenie webhooks, SIEM streaming.
    "chatops",
    "paging",
    "siem",
    # Only its `seed_demo` command, which refuses to run with DEBUG off unless forced.
    "demo",
]

MIDDLEWARE = [
    "audit.middleware.RequestIdMiddleware",
    # Right after the request id: its access line times everything below, static files too.
    "audit.request_log.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.SessionLimitMiddleware",
    "accounts.middleware.AccessPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "audit.middleware.AuditFailureMiddleware",
    "axes.middleware.AxesMiddleware",
]

# History is read in the admin, never reverted from it: a revert would bypass the change
# forms' step-up and custody checks (audit.admin.GuardedActionsMixin refuses the POST too).
SIMPLE_HISTORY_REVERT_DISABLED = True

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Before the apps' own folders, so these pages win over the admin's and django-otp's.
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'breakglass.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
    # two writers queue on the busy timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side prepared statements: the access check's recursive query costs more to plan
    # than to run. Set PG_PREPARE_THRESHOLD= (empty) behind a transaction-pooling proxy.
    threshold = env.str("PG_PREPARE_THRESHOLD", default="5")
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        int(threshold) if threshold else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Accounts and sign-in -------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Single sign-on: answers only the provider's callback (accounts/sso.py).
    "accounts.sso.SsoBackend",
]

# --- Single sign-on (OpenID Connect) ------------------------------------------------------
# Off unless OIDC_ISSUER and OIDC_CLIENT_ID are set. Endpoints come from the issuer's
# discovery document; PKCE, state and nonce are always used; ID tokens must be RS256.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = "openid email profile"
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_NONCE = True
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_TIMEOUT = 10
OIDC_AUTHENTICATION_CALLBACK_URL = "accounts:sso-callback"
# Accounts are created on first sign-in only when this is on; otherwise an administrator
# creates them (or SCIM provisions them) and the provider's `sub` is matched.
OIDC_CREATE_USER = env.bool("OIDC_CREATE_USERS", default=False)
# A provider that asserts a second factor (`amr` holds mfa or hwk) stands for ours.
OIDC_TRUST_IDP_MFA = env.bool("OIDC_TRUST_IDP_MFA", default=True)
# A first sign-on may claim the account SCIM provisioned with the same username (otherwise
# only by the SCIM externalId): only where people cannot change their own username.
OIDC_LINK_BY_USERNAME = env.bool("OIDC_LINK_BY_USERNAME", default=False)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Deny by default (accounts.middleware.AccessPolicyMiddleware): the only URLs open to anonymous
# visitors, and the sign-in steps open to a user who has given a password but no second factor.
# Every other URL needs a user verified by a second factor, then the view's own role check.
PUBLIC_URLS = frozenset({
    "accounts:login", "accounts:sso-start", "accounts:sso-callback",
    "admin:login", "healthz", "api:openapi-json", "api:openapi-view",
    # Probes for load balancers and orchestrators; /metrics checks its own token or address
    # (audit/metrics.py) and never uses a session.
    "livez", "readyz", "metrics",
    # The emergency page and the narrow session it opens check their own access
    # (backups/views.py): the browser stays anonymous everywhere else.
    "emergency:start", "emergency:verify", "emergency:new-code", "emergency:session",
    "emergency:start-backup", "emergency:download", "emergency:handover", "emergency:end",
    # Called by Slack, PagerDuty and Opsgenie: each checks the vendor's signature or token
    # before reading anything (chatops/views.py, paging/views.py).
    "chatops:interactions", "paging:pagerduty", "paging:opsgenie",
})
# The JSON API and SCIM authenticate applications by bearer token on every operation
# (api/auth.py, scim/views.py), not by session: the session checks step aside for them.
TOKEN_AUTH_NAMESPACES = frozenset({"api", "scim"})
API_TOKEN_FAILURE_LIMIT = env.int("API_TOKEN_FAILURE_LIMIT", default=10)
# Requests (Send code and Verify) one client address may make to the emergency page per minute
# before it gets 429 with Retry-After.
EMERGENCY_PAGE_REQUESTS_PER_MINUTE = env.int("EMERGENCY_PAGE_REQUESTS_PER_MINUTE", default=10)
SIGN_IN_STAGE_URLS = frozenset({
    "accounts:logout", "accounts:two-factor", "accounts:verify",
    # A passkey proves the second factor on the verify page; registering one is for
    # verified users only (accounts/passkeys.py).
    "otp_webauthn:credential-authentication-begin",
    "otp_webauthn:credential-authentication-complete",
    "otp_webauthn:js-i18n-catalog",
})

# Number of reverse proxies in front of the app that append to X-Forwarded-For. 0 means the
# header is ignored and REMOTE_ADDR is the client (the only safe choice without a proxy).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# /metrics (Prometheus): absent (404) unless one of these is set; a scrape then needs the
# bearer token or a client address (as TRUSTED_PROXY_COUNT reveals it) inside the allow-list.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if PRODUCTION and METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured(
        "METRICS_TOKEN is too short: use 32+ random characters (python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'), or leave it empty.")


def _networks(entries: list[str]) -> list[str]:
    for entry in entries:
        try:
            ipaddress.ip_network(entry)
        except ValueError:
            raise ImproperlyConfigured(
                f"METRICS_ALLOWED_ADDRESSES: {entry!r} is not an address or a network in CIDR "
                "form (10.0.0.0/8; host bits must be zero).") from None
    return entries


METRICS_ALLOWED_ADDRESSES = _networks(
    [entry.strip() for entry in env.list("METRICS_ALLOWED_ADDRESSES", default=[])
     if entry.strip()])

AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_WHITELIST_CALLABLE = "accounts.sso.exempt_from_lockout"
AXES_CLIENT_IP_CALLABLE = "accounts.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token", "code", "current_code"]
AXES_VERBOSE = False

OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Breakglass")
OTP_TOTP_THROTTLE_FACTOR = 1
# Passkeys (django-otp-webauthn). A passkey is bound to a domain name, its "relying party
# ID": by default the host of SITE_URL, and "localhost" when that is an IP address (browsers
# refuse IP addresses; open the demo at http://localhost:8000 to use passkeys).
_SITE_HOST = urlsplit(SITE_URL).hostname or "localhost"
OTP_WEBAUTHN_RP_ID = env.str("PASSKEY_RP_ID", default="") or (
    "localhost" if _is_ip_address(_SITE_HOST) else _SITE_HOST)
OTP_WEBAUTHN_RP_NAME = env.str("PASSKEY_RP_NAME", default="") or "Breakglass"
# The origins a passkey ceremony may come from: SITE_URL's (its localhost twin in the demo).
OTP_WEBAUTHN_ALLOWED_ORIGINS = (env.list("PASSKEY_ORIGINS", default=[])
                                or _passkey_origins(SITE_URL))
# Never a sign-in by passkey alone: the password comes first, the passkey is the second factor.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
BACKUP_CODE_COUNT = 10

# Sessions: users whose action can release access or secrets get idle and absolute limits
# (SessionLimitMiddleware, User.has_break_glass_rights).
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = int(timedelta(hours=12).total_seconds())
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_IDLE_TIMEOUT = timedelta(minutes=env.int("SESSION_IDLE_MINUTES", default=15))
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=env.int("SESSION_ABSOLUTE_HOURS", default=12))
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "accounts.views.csrf_failure"

# --- Transport and browser security ---------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
}
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
if TRUSTED_PROXY_COUNT > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The health checks are polled by load balancers over plain HTTP inside the network. Not
# /metrics: its bearer token must never travel in clear, and its figures are worth protecting;
# scrape it over HTTPS (or through the proxy that terminates TLS).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

# --- Mail (Django 6.1 MAILERS, from EMAIL_URL) ----------------------------------------------
def mailer_from_url(url: str) -> dict:
    """Translate an EMAIL_URL (smtp://, smtp+tls://, consolemail://, ...) into a MAILERS entry."""
    parsed = environ.Env.email_url_config(url)
    backend = parsed["EMAIL_BACKEND"]
    if backend.endswith("smtp.EmailBackend"):
        options = {
            "host": parsed["EMAIL_HOST"],
            "port": parsed["EMAIL_PORT"] or 25,
            "username": parsed["EMAIL_HOST_USER"] or None,
            "password": parsed["EMAIL_HOST_PASSWORD"] or None,
            "use_tls": parsed.get("EMAIL_USE_TLS", False),
            "use_ssl": parsed.get("EMAIL_USE_SSL", False),
            "timeout": 10,
        }
    elif backend.endswith("filebased.EmailBackend"):
        options = {"file_path": "/" + parsed["EMAIL_FILE_PATH"]}
    else:
        options = {}
    return {"BACKEND": backend, "OPTIONS": options}


MAILERS = {"default": mailer_from_url(env.str("EMAIL_URL", default="consolemail://"))}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Breakglass <breakglass@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- SMS ------------------------------------------------------------------------------------
SMS_BACKEND = env.str("SMS_BACKEND", default="console")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
# Hourly copies of the audit chain head, outside the database (see verify_audit --checkpoint).
CHECKPOINT_DIR = Path(env.str("CHECKPOINT_DIR", default=str(VAR_DIR / "checkpoints")))
# How long one alert relay holds a delivery for one provider call; a relay that died holding
# it lets another send it after this. Every provider timeout must fit six times inside it.
ALERT_LEASE_SECONDS = env.int("ALERT_LEASE_SECONDS", default=120)
OUTBOX_MAX_AGE = timedelta(minutes=5)
CHECKPOINT_MAX_AGE = timedelta(minutes=65)

# --- Product settings -----------------------------------------------------------------------
BREAKGLASS_DURATION_HOURS = env.int("BREAKGLASS_DURATION_HOURS", default=12)
# Break glass outside these hours is flagged (risk/anomalies.py); empty turns the flag off.
WORKING_HOURS = env.str("WORKING_HOURS", default="mon-fri 08:00-18:00")
WORKING_HOURS_TIME_ZONE = env.str("WORKING_HOURS_TIME_ZONE", default="UTC")
BACKUP_ROOT = Path(env.str("BACKUP_ROOT", default=str(VAR_DIR / "backups")))
BACKUP_RETENTION_DAYS = env.int("BACKUP_RETENTION_DAYS", default=7)


def default_demo_sites_dir() -> Path:
    """XDG's data folder in development; production needs no home folder (a container's uid
    may have none, and Path.home() then raises)."""
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "breakglass" / "demo-sites"
    if ENVIRONMENT != "development":
        return VAR_DIR / "demo-sites"
    return Path.home() / ".local" / "share" / "breakglass" / "demo-sites"


# What the emergency backup may read (backups/sources.py), set here and never in the admin:
# BACKUP_SOURCE_ROOTS lists absolute folders that websites' files directories must lie in;
# BACKUP_DATABASE_ALLOW lists absolute folders for SQLite files and host[:port] entries for
# PostgreSQL servers (a host alone allows any port). Empty (production's default) allows
# nothing. Development allows the demo website's folder, outside the project tree.
DEMO_SITES_DIR = Path(env.str("DEMO_SITES_DIR", default="") or default_demo_sites_dir()
                      ).expanduser()
DEVELOPMENT_BACKUP_SOURCES = [str(DEMO_SITES_DIR)] if ENVIRONMENT == "development" else []
BACKUP_SOURCE_ROOTS = env.list("BACKUP_SOURCE_ROOTS", default=DEVELOPMENT_BACKUP_SOURCES)
BACKUP_DATABASE_ALLOW = env.list("BACKUP_DATABASE_ALLOW", default=DEVELOPMENT_BACKUP_SOURCES)
if not all(Path(root).is_absolute() for root in BACKUP_SOURCE_ROOTS) or not all(
        re.fullmatch(r"/.*|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?", entry)
        for entry in BACKUP_DATABASE_ALLOW):
    raise ImproperlyConfigured(
        "BACKUP_SOURCE_ROOTS must list absolute folders, and BACKUP_DATABASE_ALLOW absolute "
        "folders (SQLite) or host[:port] entries (PostgreSQL), comma-separated."
    )
# BACKUP_REMOTE_SOURCES lists the folders on other servers a website may be backed up from,
# over SSH: ssh://host[:port]/folder entries (the port defaults to 22). Empty allows none.
BACKUP_REMOTE_SOURCES = env.list("BACKUP_REMOTE_SOURCES", default=[])
if not all(re.fullmatch(r"ssh://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?/[^\s]*", entry)
           for entry in BACKUP_REMOTE_SOURCES):
    raise ImproperlyConfigured(
        "BACKUP_REMOTE_SOURCES must list ssh://host[:port]/folder entries, comma-separated."
    )
# A backup task's own time limit (django-q2 kills a task that runs longer); the cluster's
# `retry` below must exceed it, or the broker hands a running backup to a second worker.
BACKUP_TIMEOUT_MINUTES = env.int("BACKUP_TIMEOUT_MINUTES", default=360)
# A running backup whose worker has not reported progress for this long (it reports every
# second, even during a long dump) is taken to be dead: failed and retried by another worker.
BACKUP_STALE_SECONDS = env.int("BACKUP_STALE_SECONDS", default=120)
if BACKUP_STALE_SECONDS < 10:
    raise ImproperlyConfigured("BACKUP_STALE_SECONDS must be at least 10.")
DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="demo-breakglass")
SCHEDULER_HEARTBEAT_MAX_AGE = timedelta(minutes=10)

# --- Background work (django-q2) ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "breakglass",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 300,
    # Above every task's timeout, backups' own included (BACKUP_TIMEOUT_MINUTES).
    "retry": max(360, BACKUP_TIMEOUT_MINUTES * 60 + 300),
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Background tasks",
    # The scheduler runs every second in `manage.py qcluster` (audit's command), not in the
    # cluster's sentinel, which checks schedules only every 30 seconds.
    "scheduler": False,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Periodic work, declared here and written to django-q2's schedule table after every migrate
# (audit.schedules.sync_periodic_tasks): name -> (task path, minutes between runs).
PERIODIC_TASKS = {
    "scheduler-heartbeat": ("audit.tasks.record_heartbeat", 1),
    "alert-relay-sweep": ("audit.tasks.send_due_deliveries", 1),
    "audit-checkpoint": ("audit.tasks.write_checkpoint", 60),
    "grant-expiry-sweep": ("breakglass.tasks.expire_due_grants", 1),
    "grant-expiry-reminders": ("breakglass.tasks.send_expiry_reminders", 1),
    "request-lapse-sweep": ("breakglass.tasks.lapse_due_requests", 1),
    "connector-reconcile": ("breakglass.tasks.reconcile_connectors", 1),
    "recovery-lapse-sweep": ("recovery.tasks.lapse_due_attempts", 1),
    "credential-rotation-reminders": ("recovery.tasks.send_rotation_reminders", 24 * 60),
    "backup-stale-sweep": ("backups.tasks.sweep_stale_jobs", 1),
    "backup-retention": ("backups.tasks.delete_expired_archives", 60),
    "review-escalation": ("review.tasks.escalate_overdue_reviews", 60),
    "housekeeping": ("audit.housekeeping.run", 60),
}
# What housekeeping (audit.housekeeping) keeps, in days: sign-in records of django-axes (a
# lockout's own attempts go only once its cool-off has passed), the bodies of sent alerts (the
# rows stay for the audit trail), and django-q2's results of finished tasks.
AXES_LOG_RETENTION_DAYS = env.int("AXES_LOG_RETENTION_DAYS", default=90)
ALERT_BODY_RETENTION_DAYS = env.int("ALERT_BODY_RETENTION_DAYS", default=30)
TASK_RESULT_RETENTION_DAYS = env.int("TASK_RESULT_RETENTION_DAYS", default=7)
TASK_FAILURE_RETENTION_DAYS = env.int("TASK_FAILURE_RETENTION_DAYS", default=30)

# --- Static files, i18n, logging ------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "config" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Backup archives and audit checkpoints: this node's disk (BACKUP_ROOT, CHECKPOINT_DIR) unless
# S3_BUCKET names a bucket of an S3-compatible store, which every node then shares. Several
# nodes need it: an archive one worker wrote must be downloadable from every web node.
S3_BUCKET = env.str("S3_BUCKET", default="")
if S3_BUCKET:
    _s3_options = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,
        "region_name": env.str("S3_REGION", default="") or None,
        # Empty: boto3's own chain (instance role, AWS_* variables, ~/.aws).
        "access_key": env.str("S3_ACCESS_KEY_ID", default="") or None,
        "secret_key": env.str("S3_SECRET_ACCESS_KEY", default="") or None,
        "addressing_style": env.str("S3_ADDRESSING_STYLE", default="") or None,
        # Never a public object; never overwrite one (a checkpoint is append-only).
        "default_acl": None,
        "file_overwrite": False,
        "querystring_auth": True,
        "object_parameters": ({"ServerSideEncryption": env.str("S3_SERVER_SIDE_ENCRYPTION")}
                              if env.str("S3_SERVER_SIDE_ENCRYPTION", default="") else {}),
    }
    STORAGES["backups"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        **_s3_options, "location": env.str("S3_BACKUP_PREFIX", default="backups")}}
    STORAGES["checkpoints"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        **_s3_options, "location": env.str("S3_CHECKPOINT_PREFIX", default="checkpoints")}}
# Parts of a backup's multipart upload: S3 allows at most 10,000, so 16 MiB parts reach 156 GiB.
S3_UPLOAD_PART_BYTES = env.int("S3_UPLOAD_PART_MIB", default=16) * 1024 * 1024
if not 5 <= S3_UPLOAD_PART_BYTES // (1024 * 1024) <= 5 * 1024:
    raise ImproperlyConfigured("S3_UPLOAD_PART_MIB must be between 5 and 5120 (S3's limits).")
# Each hourly checkpoint may also go to syslog (e.g. udp://siem.example:514, tcp://host:601
# or /dev/log), so that a copy lives where the application cannot rewrite it.
CHECKPOINT_SYSLOG = env.str("CHECKPOINT_SYSLOG", default="")
if CHECKPOINT_SYSLOG and not re.fullmatch(r"(udp|tcp)://[^/\s:]+(:\d{1,5})?|/\S+",
                                          CHECKPOINT_SYSLOG):
    raise ImproperlyConfigured("CHECKPOINT_SYSLOG must be udp://host[:port], tcp://host[:port] "
                               "or the path of a syslog socket.")

# Counters that every node must share (the API's failure throttle, the emergency page's
# per-address limits) live in Redis when REDIS_URL is set; otherwise in the database, which
# is shared too (never a process's memory).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL, "KEY_PREFIX": "breakglass"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "breakglass_cache"}}

WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# One JSON object per line on stderr for log shippers, or plain text on a developer's terminal;
# every line written during a request carries its id, route and user (audit/request_log.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "audit.request_log.RequestContextFilter"}},
    "formatters": {
        "json": {"()": "audit.request_log.json_formatter"},
        "text": {"()": "audit.request_log.text_formatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                    "formatter": LOG_FORMAT, "filters": ["request_context"]},
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers (console when DEBUG, mail to ADMINS) give way to the root's,
        # so each line is written once, in one format.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # runserver's access line holds the raw path and query string, where emergency and
        # abort links carry their secrets; RequestLogMiddleware writes the access line.
        "django.server": {"handlers": ["null"], "propagate": False},
    },
}

# --- Slack (chatops/) ---
# A Slack app's bot token (scopes chat:write, users:read, users:read.email) and its signing
# secret come together (check chatops.E001). Alerts for access requests and break glass go
# to SLACK_CHANNEL (a channel id); SLACK_TEAM_ID, when set, refuses other workspaces' clicks.
SLACK_BOT_TOKEN = env.str("SLACK_BOT_TOKEN", default="")
SLACK_SIGNING_SECRET = env.str("SLACK_SIGNING_SECRET", default="")
SLACK_CHANNEL = env.str("SLACK_CHANNEL", default="")
SLACK_TEAM_ID = env.str("SLACK_TEAM_ID", default="")
SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/")

# --- PagerDuty and Opsgenie webhooks (paging/) ---
# A PagerDuty event whose occurred_at is further than this from now is refused (401): its
# retries come over about 20 minutes, so raise it to 1800 to take late retries too.
PAGING_REPLAY_WINDOW_SECONDS = env.int("PAGING_REPLAY_WINDOW_SECONDS", default=300)
# How long taken event ids are kept against redelivery (at least the window above).
PAGING_EVENT_RETENTION_SECONDS = env.int("PAGING_EVENT_RETENTION_SECONDS", default=7 * 86400)
# PagerDuty drops every webhook over 256 KiB; nothing larger is read.
PAGING_MAX_BODY_BYTES = env.int("PAGING_MAX_BODY_BYTES", default=256 * 1024)
# Refused deliveries one address may cause per minute before it is answered 429 unaudited.
PAGING_REFUSAL_LIMIT = env.int("PAGING_REFUSAL_LIMIT", default=20)

# --- Outgoing webhooks, Standard Webhooks signatures (audit/webhooks.py) ---
# Alert webhooks are signed per Standard Webhooks (webhook-id, webhook-timestamp,
# webhook-signature). Endpoints are added in the admin, each with its own secret; this one comes
# from the environment and takes every alert. Its secret is whsec_ + the base64 of 24 to 64
# random bytes (the error below shows a command that makes one).
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_SECRET = env.str("ALERT_WEBHOOK_SECRET", default="")
# After a rotation the previous secret keeps signing next to the new one this long, so that a
# receiver can switch over without refusing a delivery.
WEBHOOK_ROTATION_OVERLAP = timedelta(hours=env.int("WEBHOOK_ROTATION_OVERLAP_HOURS", default=24))
if not timedelta(0) <= WEBHOOK_ROTATION_OVERLAP <= timedelta(days=7):
    raise ImproperlyConfigured("WEBHOOK_ROTATION_OVERLAP_HOURS must be between 0 and 168.")


def is_webhook_secret(value: str) -> bool:
    """whsec_ and the base64 of 24 to 64 bytes, as audit.webhooks.new_secret() makes them."""
    if not value.startswith("whsec_"):
        return False
    try:
        decoded = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except ValueError:
        return False
    return 24 <= len(decoded) <= 64


def is_webhook_url(url: str) -> bool:
    """https, or plain http to this machine's loopback outside production (audit.webhooks)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    return (not PRODUCTION and parts.scheme == "http" and _is_ip_address(host)
            and ipaddress.ip_address(host).is_loopback)


if ALERT_WEBHOOK_URL and not is_webhook_url(ALERT_WEBHOOK_URL):
    raise ImproperlyConfigured(
        "ALERT_WEBHOOK_URL must be an https:// address without user:password (plain http is "
        "allowed only to 127.0.0.1 or localhost outside production).")
if ALERT_WEBHOOK_URL and not is_webhook_secret(ALERT_WEBHOOK_SECRET):
    raise ImproperlyConfigured(
        "ALERT_WEBHOOK_URL is set: ALERT_WEBHOOK_SECRET must be a Standard Webhooks secret, "
        "whsec_ and the base64 of 24 to 64 random bytes. Generate one with: python -c 'import "
        "base64, os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())' and give "
        "the same value to the receiver.")

# --- SIEM streams (siem/) ---
# Every audit event goes to each SiemStream (admin) in sequence order with its MAC. The
# SD-ID of the syslog messages' structured data: 32473 is RFC 5612's example enterprise
# number; an organisation with its own PEN uses name@<its PEN>.
SIEM_SYSLOG_SD_ID = env.str("SIEM_SYSLOG_SD_ID", default="breakglass@32473")
if not re.fullmatch(r"[!#-<>-\\^-~]{1,32}", SIEM_SYSLOG_SD_ID) or "@" not in SIEM_SYSLOG_SD_ID:
    raise ImproperlyConfigured("SIEM_SYSLOG_SD_ID must be name@number (RFC 5424 SD-ID).")
# The largest message a destination takes (rsyslog: global(maxMessageSize="64k"); its
# default, 8k, is too small for an event with a long reason). A larger event stops its stream
# with an error rather than arrive cut, where its MAC could not be checked.
SIEM_MAX_MESSAGE_BYTES = env.int("SIEM_MAX_MESSAGE_BYTES", default=64 * 1024)
SIEM_BATCH_SIZE = env.int("SIEM_BATCH_SIZE", default=500)
# A sender holds a stream this long and sends for at most half of it (two nodes' clocks may
# disagree); a failing destination is retried after 5 s, 10 s, 20 s ... at most this.
SIEM_LEASE_SECONDS = env.int("SIEM_LEASE_SECONDS", default=60)
SIEM_MAX_BACKOFF_SECONDS = env.int("SIEM_MAX_BACKOFF_SECONDS", default=300)
if SIEM_BATCH_SIZE < 1 or SIEM_LEASE_SECONDS < 10 or SIEM_MAX_MESSAGE_BYTES < 2048:
    raise ImproperlyConfigured("SIEM_BATCH_SIZE >= 1, SIEM_LEASE_SECONDS >= 10 and "
                               "SIEM_MAX_MESSAGE_BYTES >= 2048.")


# --- API contract: idempotency keys, problem details (api/) ---
# Every other path under /api/ answers a JSON 404 (or a problem type's description) to anyone:
# it shows nothing the public OpenAPI document does not (api/views.py).
PUBLIC_URLS = PUBLIC_URLS | {"api-fallback"}

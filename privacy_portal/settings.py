"""Privacy Portal settings: one file, every knob read from the environment.

With nothing set the app runs on embedded defaults (SQLite and a filesystem
Celery broker under var/), so a new machine needs no server. Production is
switched on with PRODUCTION=true, which refuses to start without strong
SECRET_KEY and ANONYMISATION_KEY (env_secret_key), ALLOWED_HOSTS and the
deployment's own addresses (env_deployment)
and turns on the HTTPS hardening that `manage.py check --deploy` asks for.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """Read a string, or the contents of the file named by NAME_FILE (for secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as error:
            raise ImproperlyConfigured(f"{name}_FILE names {file_path}, which cannot be read: {error.strerror}") from None
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_int_list(name: str, default: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in env_list(name, default))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be comma-separated whole numbers") from None


def env_rate(name: str, default: str) -> str:
    """A rate limit as both django-ratelimit and DRF read it, a count per second, minute, hour or day
    ("10/h", "120/min"): checked at start, where a typo would otherwise fail only the first request."""
    value = env_str(name, default).strip()
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name} must be a count per second, minute, hour or day, like 10/h or 120/min, not {value!r}")
    return value


PRODUCTION = env_bool("PRODUCTION", False)


def env_deployment(name: str, development_default: str) -> str:
    """A value only the deployment knows (its address, its inboxes, the controller's identity).

    Production refuses to start without it: a default there would send links
    to localhost, alerts nowhere, or letters in another company's name.
    """
    value = env_str(name).strip()
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set in production")
    return development_default


def env_secret_key(name: str, development_default: str, *, minimum_length: int) -> str:
    """A key the app signs or hashes with. Production refuses to start without a strong one: `minimum_length`
    characters, 5 of them different (check --deploy's rule for SECRET_KEY, security.W009, asks 50), which a weak
    ANONYMISATION_KEY would otherwise pass unnoticed: whoever holds erased data could test guesses (an email
    address, a phone number) against its pseudonyms."""
    value = env_str(name)
    if not PRODUCTION:
        return value or development_default
    if not value:
        raise ImproperlyConfigured(f"{name} (or {name}_FILE) must be set in production")
    if len(value) < minimum_length or len(set(value)) < 5:
        raise ImproperlyConfigured(
            f"{name} must be at least {minimum_length} characters long, with at least 5 different ones, in production; "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    return value


DEBUG = env_bool("DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when PRODUCTION is on")

# Everything the app writes on its own (SQLite database, broker folders,
# development mail, uploaded files) lives under one folder.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

# The development keys are never used once PRODUCTION is on.
SECRET_KEY = env_secret_key("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production", minimum_length=50)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# "This form has expired", leading staff back to the dashboard and data subjects to the form.
CSRF_FAILURE_VIEW = "privacy_portal.urls.csrf_failure"

# Absolute base URL used to build links in emails (verification, status page).
SITE_URL = env_deployment("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
if PRODUCTION and not re.fullmatch(r"https://[^/\s]+(/\S*)?", SITE_URL):
    raise ImproperlyConfigured("SITE_URL must be an https:// address in production: emailed links point to it")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "requests_app",
]

MIDDLEWARE = [
    # First, so that no middleware's body reaches a HEAD either.
    "privacy_portal.middleware.head_without_body",
    "django.middleware.security.SecurityMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    # Before CSPMiddleware, so that it sees the policy header CSPMiddleware adds to the response.
    "privacy_portal.middleware.csp_reporting_endpoint",
    "csp.middleware.CSPMiddleware",
    "privacy_portal.middleware.no_store",
    "privacy_portal.middleware.dashboard_referrer",
    "privacy_portal.middleware.not_indexed",
    # Before the API's own middleware: the answers it makes before any view (a 308, 411, 413, an unknown endpoint)
    # are written in the caller's language, and carry Content-Language and Vary as the views' answers do.
    "django.middleware.locale.LocaleMiddleware",
    # Around the API's own middleware, so that its answers carry the budget their call used (if any).
    "requests_app.api.middleware.api_rate_limit_headers",
    "requests_app.api.middleware.api_body_limit",
    "requests_app.api.middleware.api_trailing_slash",
    "requests_app.api.middleware.api_debug_pages",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Before anything reads the body (the CSRF check does, in process_view, after every middleware's request
    # phase), after the language is chosen for its page and the user known (signed-in staff have a larger limit).
    "privacy_portal.middleware.body_limit",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

if PRODUCTION:
    # gunicorn serves the collected static files itself; runserver does it in development.
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "privacy_portal.urls"
WSGI_APPLICATION = "privacy_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "requests_app.staff.context.staff_role",
                "requests_app.context.controller",
            ],
        },
    },
]

# Production runs on PostgreSQL and Redis: the embedded defaults (SQLite, a broker and a cache in files) are for
# one development machine, and a deployment that forgot a variable must not start on them unnoticed.
CELERY_BROKER_URL = env_deployment("CELERY_BROKER_URL", "filesystem://")
DATABASE_URL = env_deployment("DATABASE_URL", "")
CACHE_URL = env_deployment("CACHE_URL", "")
if PRODUCTION:
    # Set by hand to a development choice is as unnoticed as unset: refused too.
    for _name, _value, _schemes in [
        ("DATABASE_URL", DATABASE_URL, ("postgres://", "postgresql://")),
        ("CELERY_BROKER_URL", CELERY_BROKER_URL, ("redis://", "rediss://", "redis+socket://", "sentinel://")),
        ("CACHE_URL", CACHE_URL, ("redis://", "rediss://", "unix://")),
    ]:
        if not _value.startswith(_schemes):
            raise ImproperlyConfigured(f"{_name} must start with {' or '.join(_schemes)} in production")
if not DATABASE_URL or CELERY_BROKER_URL == "filesystem://":
    # The embedded defaults keep their files here; create it on first use.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{VAR_DIR / 'privacy_portal.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks
    # instead of failing at once, and take the write lock at BEGIN so a
    # read-then-write transaction cannot deadlock.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if CACHE_URL:
    CACHES = {
        "default": {
            # Rate-limit counters only; an unreachable Redis lets requests through (privacy_portal.cache),
            # and a Redis that hangs is given up on quickly.
            "BACKEND": "privacy_portal.cache.FailOpenRedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    # A file cache is shared by every process on the machine, which the
    # per-IP rate limit needs; it needs no server. Ours keeps a counter's
    # expiry when it counts (privacy_portal.cache).
    CACHES = {
        "default": {
            "BACKEND": "privacy_portal.cache.CountingFileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Internationalisation: the subject picks one of these on the form and their
# emails go out in it.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr", _("French")), ("nl", _("Dutch")), ("de", _("German"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Brussels"
USE_I18N = True
# Our own English date formats (privacy_portal/formats/en): European, not American.
FORMAT_MODULE_PATH = "privacy_portal.formats"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Files (attachments, export packages) go through Django's storage API: the
# local disk by default, S3-compatible storage when AWS_STORAGE_BUCKET_NAME is
# set, so web servers and workers on different machines share them.
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage"
        if env_str("AWS_STORAGE_BUCKET_NAME")
        else "django.core.files.storage.FileSystemStorage"
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL") or None
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME") or None
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID") or None
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY") or None
AWS_DEFAULT_ACL = None
AWS_QUERYSTRING_AUTH = True
# Uploaded files hold personal data: they are never served from a public
# URL, only through views that check the staff member's permission.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Email: files under var/mail/ by default, so a new user can open the
# verification link; SMTP when EMAIL_HOST is set.
DEFAULT_FROM_EMAIL = env_deployment("DEFAULT_FROM_EMAIL", "Privacy Portal <privacy@localhost>")
DPO_EMAIL = env_deployment("DPO_EMAIL", "dpo@localhost")
# The controller and how to reach its DPO, on every public page and letter (GDPR Art. 13(1)(a)-(b)
# and 37(7)). The development defaults are our first user's, from its privacy policy.
CONTROLLER_NAME = env_deployment("CONTROLLER_NAME", "BICS SA")
_DEVELOPMENT_ADDRESSES = {
    "en": "Privacy Office, Boulevard du Roi Albert II 27, 1030 Brussels, Belgium",
    "fr": "Bureau de la vie privée, Boulevard du Roi Albert II 27, 1030 Bruxelles, Belgique",
    "nl": "Privacybureau, Koning Albert II-laan 27, 1030 Brussel, België",
    "de": "Datenschutzbüro, Boulevard du Roi Albert II 27, 1030 Brüssel, Belgien",
}
CONTROLLER_ADDRESS = env_deployment("CONTROLLER_ADDRESS", _DEVELOPMENT_ADDRESSES[LANGUAGE_CODE])
# The address as each other site language writes it ("1030 Bruxelles, Belgique"): CONTROLLER_ADDRESS_FR, _NL, _DE.
# One left unset reads as the main address, as an inventory text without its translation; a deployment's own address
# never gets the development default's translations.
CONTROLLER_ADDRESS_TRANSLATIONS = {
    code: env_str(f"CONTROLLER_ADDRESS_{code.upper()}").strip()
    or (_DEVELOPMENT_ADDRESSES[code] if CONTROLLER_ADDRESS == _DEVELOPMENT_ADDRESSES[LANGUAGE_CODE] else "")
    for code, _name in LANGUAGES
    if code != LANGUAGE_CODE
}
DPO_CONTACT_EMAIL = env_str("DPO_CONTACT_EMAIL", DPO_EMAIL)
# Production sends through SMTP: a file backend there would leave every link undelivered.
EMAIL_HOST = env_deployment("EMAIL_HOST", "")
# A mail server that hangs must not hold a task (and the rows it locked) until the time limit.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECONDS", 30)
if EMAIL_HOST:
    # Django's, logging an ERROR when the server refuses some of an email's recipients (privacy_portal.mail).
    EMAIL_BACKEND = "privacy_portal.mail.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")

# Celery. The embedded default is Kombu's filesystem transport: the worker
# and beat run on a fresh machine with no broker server.
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery" / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
CELERY_TIMEZONE = "Europe/Brussels"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Tasks that may run for most of an hour (exports, erasures in large sources) have a queue of their own,
# so that a verification link or a deadline reminder never waits behind them. Run a worker for each
# queue in production; the development worker takes both.
LONG_TASK_QUEUE = "long"
CELERY_TASK_ROUTES = {
    f"requests_app.tasks.{name}": {"queue": LONG_TASK_QUEUE}
    # The sweep of the export runs' work files too: it must run where they are written.
    for name in ("compile_export", "run_source_action_dry_run", "execute_source_action", "remove_stale_export_work_files")
}
CELERY_BEAT_SCHEDULE = {
    "sweep-deadlines": {
        "task": "requests_app.tasks.sweep_deadlines",
        "schedule": timedelta(minutes=env_int("DEADLINE_SWEEP_MINUTES", 5)),
    },
    "dispatch-unrouted-requests": {
        "task": "requests_app.tasks.dispatch_unrouted_requests",
        "schedule": timedelta(minutes=5),
    },
    "daily-digest": {
        "task": "requests_app.tasks.send_daily_digest",
        "schedule": crontab(hour=env_int("DAILY_DIGEST_HOUR", 7), minute=0),
    },
    "dispatch-due-webhooks": {
        "task": "requests_app.tasks.dispatch_due_webhooks",
        "schedule": timedelta(minutes=1),
    },
    "purge-idempotency-records": {
        "task": "requests_app.tasks.purge_idempotency_records",
        "schedule": timedelta(hours=1),
    },
    "delete-expired-exports": {
        "task": "requests_app.tasks.delete_expired_exports",
        "schedule": timedelta(hours=1),
    },
    "remove-stale-export-work-files": {
        "task": "requests_app.tasks.remove_stale_export_work_files",
        "schedule": timedelta(hours=1),
    },
    "verify-audit-chain": {
        "task": "requests_app.tasks.verify_audit_chain",
        "schedule": crontab(hour=env_int("AUDIT_CHAIN_CHECK_HOUR", 2), minute=30),
    },
    "expire-unverified-requests": {
        "task": "requests_app.tasks.expire_unverified_requests",
        "schedule": timedelta(minutes=15),
    },
    "requeue-lost-work": {
        "task": "requests_app.tasks.requeue_lost_work",
        "schedule": timedelta(minutes=15),
    },
    # An export whose worker died is taken over within a minute of its heartbeat going stale.
    "requeue-dead-exports": {
        "task": "requests_app.tasks.requeue_dead_exports",
        "schedule": timedelta(minutes=1),
    },
    # So is a dry run or an execution in a source system whose worker died.
    "requeue-dead-source-actions": {
        "task": "requests_app.tasks.requeue_dead_source_actions",
        "schedule": timedelta(minutes=1),
    },
    "purge-closed-requests": {
        "task": "requests_app.tasks.purge_closed_requests",
        "schedule": crontab(hour=3, minute=15),
    },
    "clear-expired-sessions": {
        "task": "requests_app.tasks.clear_expired_sessions",
        "schedule": timedelta(hours=1),
    },
    "delete-orphan-files": {
        "task": "requests_app.tasks.delete_orphan_files",
        "schedule": crontab(hour=3, minute=45),
    },
    "purge-webhook-deliveries": {
        "task": "requests_app.tasks.purge_webhook_deliveries",
        "schedule": crontab(hour=3, minute=25),
    },
    "purge-sign-in-records": {
        "task": "requests_app.tasks.purge_sign_in_records",
        "schedule": crontab(hour=3, minute=35),
    },
}
# A periodic run no worker started within its period (at least 30 minutes; daily jobs: 6 hours) is
# dropped, since a later one does the same work: after an outage each job runs a few times, not once
# per missed minute. Not shorter: behind a longer backlog, every run would expire and the job stall.
for _entry in CELERY_BEAT_SCHEDULE.values():
    _period = _entry["schedule"] if isinstance(_entry["schedule"], timedelta) else timedelta(hours=6)
    _entry["options"] = {"expires": max(_period, timedelta(minutes=30)).total_seconds()}

# Intake rules.
VERIFICATION_LINK_MAX_AGE = timedelta(hours=env_int("VERIFICATION_LINK_MAX_AGE_HOURS", 48))
UNVERIFIED_REQUEST_EXPIRY = timedelta(days=env_int("UNVERIFIED_REQUEST_EXPIRY_DAYS", 7))
# How long a closed request keeps the subject's personal data (storage limitation, Art. 5(1)(e)). Three
# years by default: longer than the CCPA's 24 months of request records, and time for a complaint to the
# supervisory authority. The reference, the audit trail and the certificate stay.
CLOSED_REQUEST_RETENTION = timedelta(days=env_int("CLOSED_REQUEST_RETENTION_DAYS", 3 * 365))
# The public pages' limits (requests_app.views.over_the_limit): submissions, link re-sends and replies per client
# address, generous, since a mobile operator puts many subscribers behind one address (carrier-grade NAT); and
# per email address, tight, so that one person sending again and again, or sending our emails to someone else's
# address, is stopped early without using up the budget of everyone behind the same address.
SUBMISSION_RATE_LIMIT = env_rate("SUBMISSION_RATE_LIMIT", "100/h")
SUBMISSION_EMAIL_RATE_LIMIT = env_rate("SUBMISSION_EMAIL_RATE_LIMIT", "10/h")
# The currency of an Art. 12(5) fee, as the fee letter writes it after the amount (ISO 4217).
FEE_CURRENCY = env_str("FEE_CURRENCY", "EUR")
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
# A request body from anyone but signed-in staff (the public pages, and the staff's sign-in pages): one document
# and the form around it (privacy_portal.middleware.body_limit).
PUBLIC_MAX_BODY_BYTES = ATTACHMENT_MAX_BYTES + 1024 * 1024
# A source's manual extract, which staff upload on the dashboard: one subject's data from one system, read whole
# (and streamed) when uploaded.
MANUAL_EXTRACT_MAX_BYTES = env_int("MANUAL_EXTRACT_MAX_BYTES", 100 * 1024 * 1024)
# Signed-in staff's largest upload (an extract, or a scanned letter in the admin's intake) and whole body.
STAFF_UPLOAD_MAX_BYTES = max(MANUAL_EXTRACT_MAX_BYTES, ATTACHMENT_MAX_BYTES)
STAFF_MAX_BODY_BYTES = STAFF_UPLOAD_MAX_BYTES + 1024 * 1024
# Behind a reverse proxy, the header that carries the client's address (its variable keeps django-ratelimit's
# name). Every limit reads the address through one function (privacy_portal.client_address): the public forms'
# (django-ratelimit), the API's throttles and the staff sign-in lockout (django-axes, which would read the
# proxy's own REMOTE_ADDR and lock a username out for everyone).
CLIENT_ADDRESS_HEADER = env_str("RATELIMIT_IP_META_KEY") or None
# How many proxies in a row extend that header (a CDN before a load balancer is 2): the client is the address
# the outermost one saw, that many places from the end of the list.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1)
if TRUSTED_PROXY_COUNT < 1:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT must be 1 or more, not {TRUSTED_PROXY_COUNT}")
if TRUSTED_PROXY_COUNT > 1 and CLIENT_ADDRESS_HEADER is None:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT counts addresses in a header: set RATELIMIT_IP_META_KEY too")
RATELIMIT_IP_META_KEY = "privacy_portal.client_address.client_address"
# A counter the cache cannot give (Redis down: privacy_portal.cache) allows the submission.
RATELIMIT_FAIL_OPEN = True

# Statutory deadlines. Public holidays per regime as (country, subdivision)
# for python-holidays: a controller outside Belgium changes the GDPR one.
DEADLINE_HOLIDAYS = {
    "gdpr": (env_str("GDPR_HOLIDAY_COUNTRY", "BE"), env_str("GDPR_HOLIDAY_SUBDIVISION", "")),
    "uk_gdpr": (env_str("UK_GDPR_HOLIDAY_COUNTRY", "GB"), env_str("UK_GDPR_HOLIDAY_SUBDIVISION", "ENG")),
    # Only for the CCPA's business days: 10 to confirm receipt, 15 to comply with a request to limit.
    "ccpa": (env_str("CCPA_HOLIDAY_COUNTRY", "US"), env_str("CCPA_HOLIDAY_SUBDIVISION", "CA")),
}
# Reminders to the assignee and the DPO, in days before the due date.
DEADLINE_REMINDER_DAYS = env_int_list("DEADLINE_REMINDER_DAYS", "7,2,0")

# Staff sign in with a password and a TOTP code (django-otp); repeated
# failures lock the username from that address out (django-axes).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 30))
# And failures from every address together lock the username out everywhere (staff.lockout): this many wrong
# passwords within so many minutes, from addresses the account never signed in from, refuse it for as many minutes
# more, except from an address it did sign in from (a guesser could otherwise keep anyone out for good).
AXES_HANDLER = "requests_app.staff.lockout.StaffSignInHandler"
LOGIN_USERNAME_FAILURE_LIMIT = env_int("LOGIN_USERNAME_FAILURE_LIMIT", 10)
LOGIN_USERNAME_LOCKOUT = timedelta(minutes=env_int("LOGIN_USERNAME_LOCKOUT_MINUTES", 15))
if LOGIN_USERNAME_FAILURE_LIMIT < 1 or LOGIN_USERNAME_LOCKOUT <= timedelta(0):
    raise ImproperlyConfigured("LOGIN_USERNAME_FAILURE_LIMIT and LOGIN_USERNAME_LOCKOUT_MINUTES must be 1 or more")
# django-axes' records name the username typed and the address and browser it came from: its failed attempts (what a
# lockout counts) and its log of sign-ins are deleted this long after (tasks.purge_sign_in_records). Never before a
# lockout ends: it counts the failures of the last LOGIN_LOCKOUT_MINUTES.
LOGIN_ATTEMPT_RETENTION = timedelta(days=env_int("LOGIN_ATTEMPT_LOG_DAYS", 30))
if LOGIN_ATTEMPT_RETENTION < AXES_COOLOFF_TIME:
    raise ImproperlyConfigured("LOGIN_ATTEMPT_LOG_DAYS must be at least LOGIN_LOCKOUT_MINUTES: deleting the failures a lockout counts would end it early")
# Its log of every failure stays off (its default, stated because that purge does not cover it): the audit trail
# records the refusals of existing accounts (staff.sign_in_trail).
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# An attempt made while locked out is refused unchecked and neither counted nor lengthens the lockout (which
# ends LOGIN_LOCKOUT_MINUTES after it began); django-axes then marks the request, so that the audit trail
# (staff.sign_in_trail) records a lockout once, when it begins, and nothing for the attempts it refuses.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "staff/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "privacy_portal.client_address.client_address"
# No admin pages for django-axes: they showed what was typed as a username (a password in the wrong box, say) and
# let lockout records be deleted with no audit event. The DPO unlocks an account on its staff account page, audited.
AXES_ENABLE_ADMIN = False
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Privacy Portal")
# Lifetime of a staff account's setup link (services.staff_setup); Django has no other use for it here.
PASSWORD_RESET_TIMEOUT = env_int("STAFF_INVITATION_HOURS", 72) * 3600

# Export packages.
EXPORT_WORK_DIR = env_str("EXPORT_WORK_DIR", str(VAR_DIR / "export-work"))
EXPORT_COMPRESSLEVEL = env_int("EXPORT_COMPRESSLEVEL", 6)
EXPORT_LINK_LIFETIME = timedelta(days=env_int("EXPORT_LINK_DAYS", 7))
EXPORT_MAX_DOWNLOADS = env_int("EXPORT_MAX_DOWNLOADS", 5)
EXPORT_UNRELEASED_LIFETIME = timedelta(days=env_int("EXPORT_UNRELEASED_DAYS", 30))
EXPORT_AUTO_START = env_bool("EXPORT_AUTO_START", False)
# A compiling run stamps its heartbeat this often, from a timer, however slow its sources are.
EXPORT_HEARTBEAT_INTERVAL_SECONDS = env_int("EXPORT_HEARTBEAT_INTERVAL_SECONDS", 30)
# A compiling run whose heartbeat is older than this is taken to be dead: its export is queued again
# (requeue_dead_exports, every minute) and the next run takes it over and deletes its work files.
EXPORT_HEARTBEAT_STALE_SECONDS = env_int("EXPORT_HEARTBEAT_STALE_SECONDS", 180)


def _check_heartbeat(prefix: str, interval: int, stale: int, what: str) -> None:
    if interval < 1:
        raise ImproperlyConfigured(f"{prefix}_HEARTBEAT_INTERVAL_SECONDS must be at least 1")
    if stale < 3 * interval:
        # A database blip can cost a live run a beat or two; it must not cost it its work.
        raise ImproperlyConfigured(
            f"{prefix}_HEARTBEAT_STALE_SECONDS ({stale} s) must be at least three heartbeats "
            f"(3 x {prefix}_HEARTBEAT_INTERVAL_SECONDS = {3 * interval} s): "
            f"a live {what} that missed a beat or two would be taken over"
        )


_check_heartbeat("EXPORT", EXPORT_HEARTBEAT_INTERVAL_SECONDS, EXPORT_HEARTBEAT_STALE_SECONDS, "export")
EXPORT_TASK_TIME_LIMIT = env_int("EXPORT_TASK_TIME_LIMIT", 3000)
# A queued export not taken by a worker for this long lost its task, and is queued again. Longer
# than an export may run, so an export merely waiting behind another is not queued twice.
EXPORT_LOST_AFTER = timedelta(minutes=env_int("EXPORT_LOST_AFTER_MINUTES", 60))
# The demo source systems (seed_demo) live in their own database, not the app's.
DEMO_SOURCES_URL = env_str("DEMO_SOURCES_URL", f"sqlite:///{VAR_DIR / 'demo_sources.sqlite3'}")

# Erasure by anonymisation replaces some fields with a keyed hash: the key
# must outlive SECRET_KEY rotations, or the same person would get a new pseudonym.
# 32 characters, not SECRET_KEY's 50: a 256-bit key written in base64 (`openssl rand -base64 32`) has 44, and a key
# once in use cannot be changed without changing every pseudonym it made.
ANONYMISATION_KEY = env_secret_key("ANONYMISATION_KEY", "dev-only-anonymisation-key", minimum_length=32)
# The largest page of records an HTTP source may answer: a partner API that ignores paging (or a subject with
# millions of call records on one page) would otherwise be read whole into the worker's memory, and kill it.
HTTP_SOURCE_MAX_PAGE_BYTES = env_int("HTTP_SOURCE_MAX_PAGE_BYTES", 50 * 1024 * 1024)
if HTTP_SOURCE_MAX_PAGE_BYTES < 64 * 1024:
    raise ImproperlyConfigured("HTTP_SOURCE_MAX_PAGE_BYTES must be at least 65536: every HTTP source would fail")
# A call to an HTTP source that times out, cannot connect, or is answered 429, 502, 503 or 504 is made again after
# each of these waits in turn (seconds): a partner restarting for a minute's deploy would otherwise fail a whole
# export, or stop an erasure part-way. Empty: one attempt only. A Retry-After longer than the wait is waited instead,
# up to HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS; asked to wait longer, the call fails at once, saying so.
HTTP_SOURCE_RETRY_DELAYS = env_int_list("HTTP_SOURCE_RETRY_DELAYS", "1,2,4")
HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS = env_int("HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS", 60)
if any(delay < 0 for delay in HTTP_SOURCE_RETRY_DELAYS) or HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS < 0:
    raise ImproperlyConfigured("HTTP_SOURCE_RETRY_DELAYS and HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS must not be negative")
# A SQL source's connection, read, dry run or execution that fails in a way that may pass (connection refused or cut,
# a deadlock or serialization failure, a lock timeout, SQLite's "database is locked") is tried again after each of
# these waits in turn (seconds); an error in the statement itself is not. Empty: one attempt only.
SQL_SOURCE_RETRY_DELAYS = env_int_list("SQL_SOURCE_RETRY_DELAYS", "1,2,4")
if any(delay < 0 for delay in SQL_SOURCE_RETRY_DELAYS):
    raise ImproperlyConfigured("SQL_SOURCE_RETRY_DELAYS must not be negative")
# The hard time limit of an erasure, rectification or restriction task. Past
# it no run can still be going, so staff may start a stuck one again (its
# task lost with a broker outage, say).
SOURCE_ACTION_TIME_LIMIT = env_int("SOURCE_ACTION_TIME_LIMIT_SECONDS", 2 * 3600)
# Four eyes on erasure, rectification and restriction: the staff member who starts a dry run may
# not approve it. Off by default, as a DPO working alone could then never act.
SOURCE_ACTION_FOUR_EYES = env_bool("SOURCE_ACTION_FOUR_EYES", False)
# Art. 18(3): the subject is told before a restriction is lifted. The lifting may be carried out this many
# days after the notice, so that it reaches them (a letter by post takes days) and they can object or
# complain before their data is processed again; the GDPR sets no period.
RESTRICTION_LIFT_NOTICE_DAYS = env_int("RESTRICTION_LIFT_NOTICE_DAYS", 7)
if RESTRICTION_LIFT_NOTICE_DAYS < 0:
    raise ImproperlyConfigured("RESTRICTION_LIFT_NOTICE_DAYS must be 0 or more")
# A dry run or execution stamps its heartbeat this often, from a timer, however slow its source is; one
# whose heartbeat is older than the stale window has died, and is queued again (requeue_dead_source_actions,
# every minute): found within minutes rather than after the time limit.
SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS = env_int("SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS", 30)
SOURCE_ACTION_HEARTBEAT_STALE_SECONDS = env_int("SOURCE_ACTION_HEARTBEAT_STALE_SECONDS", 180)
_check_heartbeat(
    "SOURCE_ACTION", SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS, SOURCE_ACTION_HEARTBEAT_STALE_SECONDS, "source action"
)
# A dry run or execution no worker took for this long lost its task (its publish failed while Redis was down, or
# a Redis restart dropped it), and is queued again (requeue_lost_work). As EXPORT_LOST_AFTER: one merely waiting
# behind a long run may be queued twice, which is harmless, as only one of its tasks takes it (actions._claim).
SOURCE_ACTION_LOST_AFTER = timedelta(minutes=env_int("SOURCE_ACTION_LOST_AFTER_MINUTES", 60))

if CELERY_BROKER_URL != "filesystem://":
    # Redis delivers a message nobody acknowledged within the visibility
    # timeout to another worker. Below the longest task's hard time limit, a
    # long erasure or export still running would start a second time alongside.
    # (The worker-kill tests set a few seconds, outside production, to see a
    # killed worker's task taken over quickly.)
    _longest_task = max(SOURCE_ACTION_TIME_LIMIT, EXPORT_TASK_TIME_LIMIT, CELERY_TASK_TIME_LIMIT)
    _visibility_timeout = env_int("CELERY_VISIBILITY_TIMEOUT", _longest_task + 600)
    if PRODUCTION and _visibility_timeout <= _longest_task:
        raise ImproperlyConfigured(
            f"CELERY_VISIBILITY_TIMEOUT ({_visibility_timeout} s) must exceed the longest task time limit ({_longest_task} s)"
        )
    # A Redis that stalls (a failover, a half-open connection through a firewall) would otherwise hold a publish,
    # and the web request that filed something, for ever: tasks.queue_after_commit logs a publish that times out,
    # and the sweepers do its work later. Above the worker's one-second BRPOP, which must not time out.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _visibility_timeout, "socket_timeout": 3, "socket_connect_timeout": 3}

# The file backend keeps each text, a package password included, on disk: a development default only.
# With none (production's default), packages cannot be encrypted.
SMS_BACKEND = env_str("SMS_BACKEND", "" if PRODUCTION else "requests_app.sms.FileBackend")
if PRODUCTION and SMS_BACKEND == "requests_app.sms.FileBackend":
    raise ImproperlyConfigured("SMS_BACKEND: the file backend keeps package passwords on disk, for development only")
SMS_FILE_PATH = env_str("SMS_FILE_PATH", str(VAR_DIR / "sms"))

# The REST API for business customers' portals.
API_RATE_LIMIT = env_rate("API_RATE_LIMIT", "120/min")
# Calls that end in a 401 (no key, or a wrong, expired or revoked one), per client address (the address
# SUBMISSION_RATE_LIMIT counts, RATELIMIT_IP_META_KEY behind a proxy); past it, 429. Generous: a portal
# whose key expired or was revoked, still calling at the default API_RATE_LIMIT, keeps hearing 401 (what
# it must fix), not 429, with room for a few such portals behind one address.
API_UNAUTHENTICATED_RATE_LIMIT = env_rate("API_UNAUTHENTICATED_RATE_LIMIT", "300/min")
# Room for the longest filing the schema allows sent as most JSON libraries write it, every character outside
# ASCII escaped (an emoji as "\ud83d\ude00", 12 bytes): about 208 KB; and for a suppression lookup of 1,000
# identifiers at their longest (254 characters): about 290 KB. 64 KiB refused a Cyrillic description well within
# its 10,000 characters, and a lookup of 1,000 long email addresses.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 320 * 1024)
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=env_int("IDEMPOTENCY_KEY_HOURS", 24))
# Webhooks: retried with exponential backoff for this long, then failed and
# the endpoint disabled. Plain http:// is for development only.
WEBHOOK_RETRY_WINDOW = timedelta(hours=env_int("WEBHOOK_RETRY_HOURS", 24))
# A delivered or failed delivery leaves the log (and can no longer be redelivered) this long after it was queued
# (tasks.purge_webhook_deliveries); a pending one stays until it is done. Failing for good disables an endpoint that
# took no event since the failed one was queued (services.webhooks.deliver), and an event it took may have been queued
# a retry window (and its last backoff) before that: the log keeps two windows and a day at least.
WEBHOOK_DELIVERY_RETENTION = timedelta(days=env_int("WEBHOOK_DELIVERY_LOG_DAYS", 90))
if WEBHOOK_DELIVERY_RETENTION < 2 * WEBHOOK_RETRY_WINDOW + timedelta(days=1):
    _minimum_days = -(-(2 * WEBHOOK_RETRY_WINDOW + timedelta(days=1)) // timedelta(days=1))
    raise ImproperlyConfigured(
        f"WEBHOOK_DELIVERY_LOG_DAYS must be at least {_minimum_days} (twice WEBHOOK_RETRY_HOURS and a day): disabling an "
        "endpoint that fails for good reads the deliveries of that time"
    )
# The whole of one attempt to send an event or a recipient notice: resolving the name, connecting, sending, and the
# status of the answer, however slowly the endpoint sends it (the README's "no answer in 10 s"). Well within
# deliver_webhook's soft time limit (100 s), so that an attempt ends, and is recorded, before the task's limit.
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
if not 1 <= WEBHOOK_TIMEOUT_SECONDS <= 60:
    raise ImproperlyConfigured("WEBHOOK_TIMEOUT_SECONDS must be from 1 to 60")
# An attempt resolves its host name in a thread it waits for until its deadline only; behind a DNS server that never
# answers, that thread lives on until the resolver gives up. At most this many such lookups are in flight per worker
# process: with all of them waiting, an attempt fails at once ("Too slow: the host name did not resolve in time.") and
# is tried again later, rather than leaving one more thread behind.
WEBHOOK_MAX_PENDING_LOOKUPS = env_int("WEBHOOK_MAX_PENDING_LOOKUPS", 8)
if WEBHOOK_MAX_PENDING_LOOKUPS < 1:
    raise ImproperlyConfigured("WEBHOOK_MAX_PENDING_LOOKUPS must be 1 or more: no webhook could be sent")
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", not PRODUCTION)
# Webhooks and recipient notices go only to public addresses: a URL that names or resolves to a loopback,
# private, link-local or otherwise internal address would let whoever registers URLs probe the internal
# network. Development and the tests send to receivers on 127.0.0.1, hence on there.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", not PRODUCTION)
# After the DPO rolls an endpoint's secret, the old one goes on signing beside the new one for this
# long, so the organisation can deploy the new secret without missing an event. 0: it stops at once.
WEBHOOK_SECRET_OVERLAP = timedelta(hours=env_int("WEBHOOK_SECRET_OVERLAP_HOURS", 24))
if WEBHOOK_SECRET_OVERLAP < timedelta(0):
    raise ImproperlyConfigured("WEBHOOK_SECRET_OVERLAP_HOURS must be 0 or more")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["requests_app.api.auth.OrganisationKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["requests_app.api.auth.HasOrganisationKey"],
    "DEFAULT_THROTTLE_CLASSES": ["requests_app.api.auth.OrganisationKeyThrottle"],
    # "unauthenticated" is not a default throttle class: a call whose key fails never reaches the
    # throttles; it is counted where its 401 is answered (requests_app.api.auth.UnauthenticatedThrottle).
    "DEFAULT_THROTTLE_RATES": {"organisation_key": API_RATE_LIMIT, "unauthenticated": API_UNAUTHENTICATED_RATE_LIMIT},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["requests_app.api.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "requests_app.api.negotiation.JSONOrProblemNegotiation",
    "EXCEPTION_HANDLER": "requests_app.api.errors.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Privacy Portal API",
    "DESCRIPTION": "File and follow privacy-rights requests on behalf of your users. "
    "Authenticate with `Authorization: Api-Key <key>`. Errors are RFC 9457 problem details, their `detail` and "
    "field messages in the language `Accept-Language` asks for (English, French, Dutch or German), as are a "
    "request's `status_label` and timeline texts; a program reads a problem's `type` and a request's `status`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # One schema name per choice set that several endpoints share.
    "ENUM_NAME_OVERRIDES": {
        "RequestTypeEnum": "requests_app.models.RequestType",
        "IdentityKindEnum": "requests_app.models.IdentityKind",
    },
    # drf-spectacular's own enum hook, then one that writes "an object or null" as OpenAPI 3.0 validators read it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "requests_app.api.schema.nullable_references",
    ],
}

# Content-Security-Policy (django-csp): pages load scripts, styles, images and
# fonts from this site only, run no inline script or style, send forms only
# here, and cannot be framed. A page where staff or a subject typed a
# `<script>` that escaped the templates' autoescaping would still not run it.
# Views that need more say so with csp_update (the API docs, the certificate).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        # The authenticator's QR code is inline SVG, which img-src does not govern.
        "img-src": [SELF],
        "font-src": [SELF],
        # The staff pages poll an export's or an action's progress.
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
    }
}
# Browsers report what the policy blocks to /csp-report/ (privacy_portal.csp_reports), which logs it
# without personal data: a page the policy breaks shows in the logs, not only in a visitor's console.
# Firefox and Safari read report-uri; Chromium reads report-to and the Reporting-Endpoints header
# (privacy_portal.middleware.csp_reporting_endpoint). Off: the policy asks for no reports, and the
# address answers 404 (for a deployment whose logs fill with reports of browser extensions' scripts).
CSP_REPORTS = env_bool("CSP_REPORTS", True)
# Reports per client address (the address SUBMISSION_RATE_LIMIT counts); past it, 429 and nothing logged.
CSP_REPORT_RATE_LIMIT = env_rate("CSP_REPORT_RATE_LIMIT", "60/h")
if CSP_REPORTS:
    CONTENT_SECURITY_POLICY["DIRECTIVES"] |= {"report-uri": [reverse_lazy("csp_report")], "report-to": "csp"}

# Permissions-Policy (django-permissions-policy): the browser features no page uses are off, on every
# answer, for the site and anything it might frame. A script that slipped past the policy above still
# could not turn on the camera or microphone, locate the visitor, or take a payment; browsing-topics and
# interest-cohort keep a subject's visit out of the browser's advertising profile. Only features Chromium
# knows: it warns on the console about any other.
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "browsing-topics",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "interest-cohort",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

LOGIN_URL = "staff:login"
LOGIN_REDIRECT_URL = "staff:home"
# An idle staff session ends after this; every request renews it, except the dashboard's progress polls.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_TIMEOUT_SECONDS", 30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
# However active, a staff session ends this long after signing in (requests_app.staff.sessions): a session
# stolen, or left open on a busy page, does not last for ever.
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=env_int("SESSION_ABSOLUTE_TIMEOUT_HOURS", 12))
if SESSION_ABSOLUTE_TIMEOUT <= timedelta(0):
    raise ImproperlyConfigured("SESSION_ABSOLUTE_TIMEOUT_HOURS must be 1 or more")
# Django's database sessions, with that absolute end, and polls that do not renew them.
SESSION_ENGINE = "requests_app.staff.sessions"
SESSION_COOKIE_HTTPONLY = True
# Pages never tell the next address theirs: a status page's or a verification link's holds its secret, which
# its own style sheet's request would otherwise carry into proxy logs. Only the dashboard's pages, which hold
# none and whose forms return to the page they were sent from, tell it within the site (dashboard_referrer).
SECURE_REFERRER_POLICY = "strict-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SAMESITE = "Lax"
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        if not CLIENT_ADDRESS_HEADER:
            # Every visitor would have the proxy's address: the form's rate limit and the
            # staff lockout would then apply to everyone at once.
            raise ImproperlyConfigured(
                "Behind a proxy (SECURE_PROXY_SSL_HEADER), set RATELIMIT_IP_META_KEY to the header that carries "
                "the client's address (e.g. HTTP_X_REAL_IP)"
            )

# Logs carry ids and references, never personal data.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact_secret_links": {"()": "privacy_portal.logging.RedactSecretLinks"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secret_links"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "axes": {"level": "WARNING"},
        # runserver's request lines (make run) and Django's own 4xx/5xx lines pass the same filter:
        # Django's default "django" handler, which writes them too when DEBUG is on, has none.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # Whatever LOG_LEVEL says: at DEBUG these write what personal data passes through them, every
        # SQL statement with its parameters and every URL a source system is asked for (an email in its path).
        "django.db.backends": {"level": "WARNING"},
        # urllib3 logs nothing above WARNING, and its warnings name the URL too (a source's answer with a malformed
        # header, a retried connection): the connectors and webhooks raise and log what failed themselves.
        "urllib3": {"level": "ERROR"},
    },
}

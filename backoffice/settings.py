"""Settings, all read from the environment (see README, "Configuration").

Parsing is strict: a malformed value stops the start-up with a message naming
the variable, instead of silently falling back to a default.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

_REQUIRED = object()


def env(name: str, default=_REQUIRED) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is _REQUIRED:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = env(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}.")


def env_int(name: str, default: int) -> int:
    value = env(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.") from None


def env_float(name: str, default: float) -> float:
    value = env(name, "")
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    value = env(name, "")
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


DEBUG = env_bool("DEBUG", False)

# Without SECRET_KEY, development gets a random one (sessions end on restart);
# production refuses to start. `make run` keeps a stable one in .data/.
SECRET_KEY = env("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set the SECRET_KEY environment variable.")
    SECRET_KEY = get_random_secret_key()
# API tokens are stored as a keyed BLAKE2b MAC under this key. Keep it separate from
# SECRET_KEY so rotating the latter does not invalidate every customer's token.
TOKEN_HASH_KEY = env("TOKEN_HASH_KEY", SECRET_KEY)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "accounts",
    "billing",
    "usage",
    "backoffice",  # its management commands: run_schedule
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "backoffice.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "backoffice.middleware.HtmxPageMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            # {% partialdef %} in every template: each page names its htmx fragment.
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.organizations.navigation",
            ],
        },
    },
]

try:
    # Connections come from the pool below and go back to it after each request (so no
    # conn_max_age); the health check on checkout skips those a database restart killed.
    # Without DATABASE_URL, commands that need no database (collectstatic) still run: the
    # first query stops, saying to set it.
    DATABASES = {
        "default": dj_database_url.parse(env("DATABASE_URL"), conn_health_checks=True)
        if env("DATABASE_URL", "")
        else {"ENGINE": "backoffice.no_database"}
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
# At most DATABASE_POOL_SIZE connections per process. Two stay with its background threads
# (usage flusher, forward-auth refresher); requests share the rest, waiting up to
# DATABASE_POOL_TIMEOUT seconds for one, then failing with an error instead of piling up.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10)
if DATABASE_POOL_SIZE < 3:
    raise ImproperlyConfigured(
        f"DATABASE_POOL_SIZE must be at least 3 (2 for background threads), not {DATABASE_POOL_SIZE}."
    )
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 10.0)
if DATABASE_POOL_TIMEOUT <= 0:
    raise ImproperlyConfigured(
        f"DATABASE_POOL_TIMEOUT must be a positive number of seconds, not {DATABASE_POOL_TIMEOUT}."
    )
database_options = DATABASES["default"].setdefault("OPTIONS", {})
# Every query here is short (pages read rollups): PostgreSQL's JIT compiled for 100-300 ms what
# then ran in 2 (the usage flusher's merge, every second, a quarter of a core).
database_options["options"] = f"{database_options.get('options', '')} -c jit=off".strip()
database_options["pool"] = {
    "min_size": 2,
    "max_size": DATABASE_POOL_SIZE,
    "timeout": DATABASE_POOL_TIMEOUT,
    # A failing connection attempt is retried with backoff for 5 s, then dropped so that the next
    # request starts afresh: service resumes seconds after an outage, not minutes (psycopg's 300 s).
    "reconnect_timeout": 5,
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Forward-auth (usage/forward_auth.py). Counters live in Redis whenever it is configured
# (exact across processes and replicas), else in process memory, which is exact for one
# process only: a second process serving forward-auth on the same database refuses to start.
FORWARD_AUTH_BACKEND = env_choice("FORWARD_AUTH_BACKEND", "redis" if REDIS_URL else "memory", ("memory", "redis"))
if FORWARD_AUTH_BACKEND == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("FORWARD_AUTH_BACKEND=redis needs REDIS_URL.")
# Redis connections per process, shared by its threads, and how long a decision waits for a
# free one (a busy pool is not an outage) before Redis counts as unavailable.
FORWARD_AUTH_REDIS_CONNECTIONS = env_int("FORWARD_AUTH_REDIS_CONNECTIONS", 32)
FORWARD_AUTH_REDIS_WAIT = env_float("FORWARD_AUTH_REDIS_WAIT", 1.0)
# When Redis (counters) or PostgreSQL (tokens, before the first load) is down:
# false answers 503, true lets calls through unchecked (marked with a header).
FORWARD_AUTH_FAIL_OPEN = env_bool("FORWARD_AUTH_FAIL_OPEN", False)
# How often each process reads the change feed for token and plan changes (seconds); 0 = never.
FORWARD_AUTH_REFRESH_SECONDS = env_float("FORWARD_AUTH_REFRESH_SECONDS", 1.0)
# Tokens in use kept in memory per process (and as many prefixes known to be no token), and
# database look-ups of tokens not in memory allowed per second per process.
FORWARD_AUTH_CACHE_SIZE = env_int("FORWARD_AUTH_CACHE_SIZE", 100_000)
FORWARD_AUTH_LOOKUPS_PER_SECOND = env_int("FORWARD_AUTH_LOOKUPS_PER_SECOND", 1000)
# A concurrency lease not released by the upstream expires after this many seconds.
FORWARD_AUTH_LEASE_TTL = env_float("FORWARD_AUTH_LEASE_TTL", 60.0)

# Where customers call the API (the gateway), as shown in examples; `make run` sets its local Traefik.
API_BASE_URL = env("API_BASE_URL", "https://api.example.com").rstrip("/")

# Usage events (usage/recorder.py, usage/store.py).
USAGE_RAW_RETENTION_DAYS = env_int("USAGE_RAW_RETENTION_DAYS", 90)  # raw events; the aggregates stay
USAGE_FLUSH_SECONDS = env_float("USAGE_FLUSH_SECONDS", 1.0)  # or sooner once USAGE_FLUSH_BATCH wait
USAGE_FLUSH_BATCH = env_int("USAGE_FLUSH_BATCH", 20_000)
# Events kept in memory while the database is down; the rest go to the journal.
USAGE_MEMORY_LIMIT = env_int("USAGE_MEMORY_LIMIT", 500_000)
USAGE_JOURNAL_DIR = Path(env("USAGE_JOURNAL_DIR", str(BASE_DIR / ".data" / "usage-journal")))
# The model services' token for POST /usage/quantities (empty: the endpoint refuses everyone).
USAGE_SERVICE_TOKEN = env("USAGE_SERVICE_TOKEN", "")

# Stripe (billing/stripe_client.py). Without a secret key, billing is off: sign-up creates
# no Stripe customer and the Billing page says so. STRIPE_API_BASE points elsewhere
# than Stripe only for tests (localstripe).
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", "")
STRIPE_API_BASE = env("STRIPE_API_BASE", "https://api.stripe.com")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", "")
STRIPE_METER_EVENT_NAME = env("STRIPE_METER_EVENT_NAME", "words_generated")
# The API version our code reads Stripe's objects in; upgrading the library does not change it.
STRIPE_API_VERSION = "2026-10-28.endive"
# Days a past_due subscription keeps its paid plan after its payment failed; 0: the Free plan at once.
FAILED_PAYMENT_GRACE_DAYS = env_int("FAILED_PAYMENT_GRACE_DAYS", 0)
if FAILED_PAYMENT_GRACE_DAYS < 0:
    raise ImproperlyConfigured("FAILED_PAYMENT_GRACE_DAYS must be 0 or more.")
# After the grace, a failed payment either falls back to the Free plan ("free") or keeps the plan
# and blocks every call (402 Payment failed) until the invoice is paid ("block").
FAILED_PAYMENT_POLICY = env_choice("FAILED_PAYMENT_POLICY", "free", ("free", "block"))

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
CSRF_FAILURE_VIEW = "backoffice.views.csrf_failure"  # a page in the site's layout, saying what to do
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Failed logins allowed per (e-mail address, client IP) and per client IP within the window.
LOGIN_FAILURES_PER_EMAIL = env_int("LOGIN_FAILURES_PER_EMAIL", 5)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 20)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 15 * 60)
# Reverse proxies in front that append the client's address to X-Forwarded-For (Traefik: 1).
# 0 trusts none: the client is REMOTE_ADDR. See core/proxy.py.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT must be 0 or more, not {TRUSTED_PROXY_COUNT}.")

EMAIL_HOST = env("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "NLP API <noreply@localhost>")
SUPPORT_EMAIL = env("SUPPORT_EMAIL", "")  # where support messages go; empty: every active staff user

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's target in production; development serves from the finders.
STATIC_ROOT = None if DEBUG else BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Production hardening; `manage.py check --deploy` passes with DEBUG off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Machine endpoints, called over plain HTTP on the internal network (Traefik, the model services).
SECURE_REDIRECT_EXEMPT = [r"^forward-auth$", r"^forward-auth/release$", r"^usage/quantities$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}

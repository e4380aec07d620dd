"""Anvil's one settings file. Everything an operator changes comes from the environment;
README.md and .env.example list each variable."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from portal.env import (
    check_oidc_settings,
    env_bool,
    env_choice,
    env_database,
    env_decimal,
    env_int,
    env_list,
    env_metrics_dir,
    env_networks,
    env_pairs,
    env_port,
    env_proxy_ssl_header,
    env_redis_url,
    env_secret,
    env_str,
    env_time_zone,
    env_token,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", debug=DEBUG, dev_default="dev-only-secret-key-" + "x" * 32)
# Keys API and management secrets are hashed with this, never with SECRET_KEY.
API_KEY_PEPPER = env_secret(
    "API_KEY_PEPPER", debug=DEBUG, dev_default="dev-only-pepper-" + "y" * 32
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "mozilla_django_oidc",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, no CDN
    "csp",
    "corsheaders",
    "apps.core",
    "apps.accounts",
    "apps.teams",
    "apps.catalog",
    "apps.grants",
    "apps.keys",
    "apps.usage",
    "apps.api",
    "apps.gateway",
    "apps.jobs",
    "apps.audit",
    "apps.limits",
    "apps.consumption",
    "apps.statements",
    "apps.notifications",
    "apps.demo",
    "apps.playground",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # /api/v1/ only (CORS_URLS_REGEX)
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.accounts.oidc.SessionRefresh",
    "apps.accounts.middleware.StaffSecondFactorMiddleware",
    # Last: its process_exception sees a view's exception first.
    "apps.core.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.portal",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'anvil.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Concurrent readers and one writer without "database is locked" under the ASGI server.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_redis_url("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "anvil"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: with Redis a real broker and workers; without it tasks run in-process.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = None  # filled below from TIME_ZONE

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "catalog:models"
LOGOUT_REDIRECT_URL = "account_login"

# django-allauth: local accounts, signed in by username or e-mail.
SIGNUP_OPEN = env_bool("SIGNUP_OPEN", True)
ACCOUNT_ADAPTER = "apps.accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = None
# Before a change to an account's security (setting up a second factor, say) allauth asks for
# the password again unless it was typed, at sign-in or since, this many seconds ago
# (apps.accounts.adapters).
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300

# Institutional sign-in (OpenID Connect, apps/accounts/oidc.py) switches on when its client id
# is set; README lists what each variable does.
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = env_choice("OIDC_RP_SIGN_ALGO", "RS256", ["RS256", "ES256", "HS256"])
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
# The provider: its discovery document, or its issuer and endpoints one by one (these override
# what the document says).
OIDC_OP_DISCOVERY_URL = env_str("OIDC_OP_DISCOVERY_URL", "")
OIDC_OP_ISSUER = env_str("OIDC_OP_ISSUER", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_OP_LOGOUT_ENDPOINT = env_str("OIDC_OP_LOGOUT_ENDPOINT", "")
OIDC_OP_LABEL = env_str("OIDC_OP_LABEL", "your institution")
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10, minimum=1)  # seconds, each call to the provider
# Claims → person (apps/accounts/claims.py).
OIDC_LINK_BY_EMAIL = env_bool("OIDC_LINK_BY_EMAIL", False)
OIDC_REQUIRE_VERIFIED_EMAIL = env_bool("OIDC_REQUIRE_VERIFIED_EMAIL", False)
OIDC_REQUIRED_CLAIMS = [
    name.strip() for name in env_str("OIDC_REQUIRED_CLAIMS", "email").split(",") if name.strip()
]
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_AFFILIATION_CLAIM = env_str("OIDC_AFFILIATION_CLAIM", "")
OIDC_AFFILIATION_MAP = env_pairs("OIDC_AFFILIATION_MAP") or {
    "academic": "academic",
    "commercial": "commercial",
}
OIDC_AFFILIATION_DEFAULT = env_choice(
    "OIDC_AFFILIATION_DEFAULT", "commercial", ["academic", "commercial"]
)
OIDC_TEAMS_CLAIM = env_str("OIDC_TEAMS_CLAIM", "")
# mozilla-django-oidc: our views, PKCE, the id token kept for the provider's sign-out, and a
# silent renewal at the provider (prompt=none) once the session is this old.
OIDC_AUTHENTICATE_CLASS = "apps.accounts.oidc.SignInStartView"
OIDC_CALLBACK_CLASS = "apps.accounts.oidc.SignInCallbackView"
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = True
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env_int("OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS", 900, minimum=60)
if OIDC_ENABLED:
    check_oidc_settings(
        discovery_url=OIDC_OP_DISCOVERY_URL,
        issuer=OIDC_OP_ISSUER,
        authorization=OIDC_OP_AUTHORIZATION_ENDPOINT,
        token=OIDC_OP_TOKEN_ENDPOINT,
        jwks=OIDC_OP_JWKS_ENDPOINT,
        algorithm=OIDC_RP_SIGN_ALGO,
        secret=OIDC_RP_CLIENT_SECRET,
        affiliation_map=OIDC_AFFILIATION_MAP,
    )
    AUTHENTICATION_BACKENDS.append("apps.accounts.oidc.ProviderBackend")
# Whether the sign-in page shows the username/password form (it always does on the way to
# the admin); off, local sign-up closes too.
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)

# allauth's rate limits (failed sign-ins per account and per address) count the client's
# address: behind this many reverse proxies it is taken from X-Forwarded-For.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# Staff open the admin only after a second factor (TOTP, with recovery codes): django-allauth's
# MFA, enforced by apps.accounts.middleware.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Anvil"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's defaults, with JSON nested too deeply answered 400 instead of a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "apps.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Every API error as {"error": {"message", "type", "param", "code"}}.
    "EXCEPTION_HANDLER": "apps.api.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Anvil API",
    "DESCRIPTION": "OpenAI-compatible inference API and the portal's own API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would fetch it from validator.swagger.io, sending it the
    # schema's address, and the Content-Security-Policy refuses images from elsewhere.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "validatorUrl": None},
    # The OpenAI-compatible endpoints are plain async views (apps.gateway.views), which
    # drf-spectacular does not see: apps.gateway.openapi describes them and adds them here.
    "PREPROCESSING_HOOKS": ["apps.gateway.openapi.gateway_endpoints"],
    # Three choice sets of fields named "status": an API key's, a job's, and a job's or
    # "not_found" for an id asked about (apps/jobs/apis.py).
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": ["active", "expired", "revoked"],
        "JobStatusEnum": "apps.jobs.models.Status",
        "JobLookupStatusEnum": "apps.jobs.apis.LOOKUP_STATUSES",
        # The gateway's error codes, one set per status (apps.gateway.openapi.ERROR_CODES).
        "BadRequestCodeEnum": "apps.gateway.openapi.BAD_REQUEST_CODES",
        "UnauthorizedCodeEnum": "apps.gateway.openapi.UNAUTHORIZED_CODES",
        "ForbiddenCodeEnum": "apps.gateway.openapi.FORBIDDEN_CODES",
        "NotFoundCodeEnum": "apps.gateway.openapi.NOT_FOUND_CODES",
        "MethodNotAllowedCodeEnum": "apps.gateway.openapi.METHOD_NOT_ALLOWED_CODES",
        "TooLargeCodeEnum": "apps.gateway.openapi.TOO_LARGE_CODES",
        "TooManyRequestsCodeEnum": "apps.gateway.openapi.TOO_MANY_CODES",
        "BadGatewayCodeEnum": "apps.gateway.openapi.BAD_GATEWAY_CODES",
        "UnavailableCodeEnum": "apps.gateway.openapi.UNAVAILABLE_CODES",
        "GatewayTimeoutCodeEnum": "apps.gateway.openapi.TIMEOUT_CODES",
        # OpenAI's one-value "object" and "type" fields of the gateway's answers.
        "ChatCompletionObjectEnum": ["chat.completion"],
        "CompletionObjectEnum": ["text_completion"],
        "EmbeddingObjectEnum": ["embedding"],
        "ListObjectEnum": ["list"],
        "ModelObjectEnum": ["model"],
        "ResponseObjectEnum": ["response"],
        "FunctionTypeEnum": ["function"],
        "MessageTypeEnum": ["message"],
        "FunctionCallTypeEnum": ["function_call"],
        "OutputTextTypeEnum": ["output_text"],
    },
}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_time_zone("TIME_ZONE", "Europe/Warsaw")
CELERY_TIMEZONE = TIME_ZONE
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Content-Security-Policy on every portal page (django-csp): scripts and styles only from the
# portal's own static files, never inline, never from elsewhere. Templates keep no <script>
# blocks, no on*= handlers and no style= attributes; JSON data for scripts goes in
# <script type="application/json"> blocks, which are never run. The API docs page widens this
# for Swagger UI (apps.core.api_docs). The gateway (/api/v1/chat/... served by
# apps.gateway.handler) answers JSON outside Django's middleware and sends none.
# CORS (django-cors-headers): browser-based clients on these origins (scheme://host[:port],
# comma-separated; default none) may call the API under /api/v1/ with a key. A preflight is
# answered without a key. No cookies are ever allowed cross-origin, and the portal's pages stay
# same-origin only.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/v1/"
CORS_ALLOW_CREDENTIALS = False
# Authorization must be named (a wildcard never covers it); "*" lets the rest through (the
# openai package's x-stainless-* headers, say).
CORS_ALLOW_HEADERS = ("authorization", "content-type", "x-request-id", "*")
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "retry-after",
    "x-anvil-credits-charged",
    "x-anvil-credits-remaining",
    "x-anvil-limited-by",
    "x-anvil-max-tokens-lowered",
    "x-anvil-usage-estimated",
)

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
}

SESSION_COOKIE_HTTPONLY = True
# Set SECURE_COOKIES=true behind HTTPS (the production reverse proxy).
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HTTPS (README, Configuration: production values make `manage.py check --deploy` clean).
# The header a reverse proxy sets on requests that reached it over HTTPS, e.g.
# X-Forwarded-Proto (→ ("HTTP_X_FORWARDED_PROTO", "https")); only with a proxy that always sets
# or strips it.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
# Redirect plain-HTTP portal requests to HTTPS, and tell browsers to use only HTTPS (HSTS).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# New API keys expire this many days after creation unless the creator says otherwise.
API_KEY_DEFAULT_DAYS = env_int("API_KEY_DEFAULT_DAYS", 30, minimum=1)
# Authenticated keys stay this long in the cache; revoking or changing one drops it at once.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 60, minimum=1)

# E-mail (notifications): printed to the console unless EMAIL_HOST names an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST", "")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Anvil <anvil@localhost>")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 20  # seconds; a stuck server must not hold a worker
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# text: the message alone, as it always was; json: one JSON object per line with the time,
# level, logger, message and, within a request, its id, key prefix, model, status and duration
# (apps/core/logs.py), never a request's body.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ["text", "json"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apps.core.logs.JsonFormatter"}},
    "filters": {"request": {"()": "apps.core.logs.RequestFields"}},
    "handlers": {
        "console": (
            {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request"]}
            if LOG_FORMAT == "json"
            else {"class": "logging.StreamHandler"}
        )
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx/httpcore log every backend request at INFO: one line per gateway request.
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # A line per portal request and per gateway answer that is not 2xx, in place of
        # uvicorn's access log (apps/core/access_log.py); at LOG_LEVEL unless turned off.
        "anvil.access": {"level": "NOTSET" if env_bool("ACCESS_LOG", True) else "WARNING"},
    },
}
if LOG_FORMAT == "json":
    # uvicorn's own lines (startup, errors, its access log when switched on) in JSON too: its
    # loggers write to handlers of their own unless given ours.
    for name in ("uvicorn", "uvicorn.access"):
        LOGGING["loggers"][name] = {"handlers": ["console"], "level": "INFO", "propagate": False}

# Largest request body (bytes) any portal path accepts (forms, the portal's API); larger ones
# get 413 before they are read (portal/asgi.py). The gateway has its own limit, below.
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# Django's own check of a body it parses (request.body, forms), consistent with it.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES

# The OpenAI-compatible gateway.
# Largest request body accepted (bytes); larger ones get 413.
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
# Seconds to connect to a backend, and at most between two bytes of its answer.
GATEWAY_CONNECT_TIMEOUT = env_int("GATEWAY_CONNECT_TIMEOUT", 5, minimum=1)
GATEWAY_READ_TIMEOUT = env_int("GATEWAY_READ_TIMEOUT", 300, minimum=1)
# Seconds a backend may take to count a stream's rendered prompt (``tokenize`` in the catalog)
# when the stream ended without usage; slower, the estimate is billed.
GATEWAY_TOKENIZE_SECONDS = env_int("GATEWAY_TOKENIZE_SECONDS", 2, minimum=1)
# Retry-After (seconds) of a backend's 429 or 503 passed on without one of its own.
GATEWAY_BACKEND_RETRY_AFTER = env_int("GATEWAY_BACKEND_RETRY_AFTER", 5, minimum=1)
# Longest a request may take in all (a stream is cut there); its credit hold lives 2 min longer.
GATEWAY_REQUEST_MAX_SECONDS = env_int("GATEWAY_REQUEST_MAX_SECONDS", 1800, minimum=10)
# Pooled connections to all backends together, per process.
GATEWAY_MAX_CONNECTIONS = env_int("GATEWAY_MAX_CONNECTIONS", 256, minimum=1)
# Seconds a process keeps its copy of the catalog (saves made in the admin drop it at once).
GATEWAY_CATALOG_SECONDS = env_int("GATEWAY_CATALOG_SECONDS", 5, minimum=0)
# When the budget covers only part of max_tokens: lower max_tokens (true) or refuse (false).
GATEWAY_PARTIAL_MAX_TOKENS = env_bool("GATEWAY_PARTIAL_MAX_TOKENS", True)
# PostgreSQL connections per process for the gateway's credit holds and settlements, which
# run on the event loop (apps.usage.pg); a request holds one for a transaction's length.
GATEWAY_DB_POOL_SIZE = env_int("GATEWAY_DB_POOL_SIZE", 10, minimum=1)
# Wait for a credit hold's commit to reach the disk (true), or not (false: about 0.2 ms less per
# request; a database crash can then lose holds of requests in flight, which are then served
# without charge). Settlements, which write the ledger, always wait. PostgreSQL only.
GATEWAY_DURABLE_HOLDS = env_bool("GATEWAY_DURABLE_HOLDS", False)
# A key's next credit hold is placed while its current request runs (apps/usage/ready.py).
GATEWAY_READY_HOLDS = env_bool("GATEWAY_READY_HOLDS", True)
GATEWAY_READY_HOLD_SECONDS = env_int("GATEWAY_READY_HOLD_SECONDS", 2, minimum=1)

# Prometheus metrics (README, "Metrics"): recorded per process (apps/gateway/metrics.py) and
# served at /metrics (portal/metrics.py). Off: nothing is recorded and /metrics answers 404.
METRICS_ENABLED = env_bool("METRICS_ENABLED", False)
# 0: /metrics on the server's own port; else a listener of its own on METRICS_HOST:METRICS_PORT
# in every server process (SO_REUSEPORT: any of them answers for all).
METRICS_PORT = env_port("METRICS_PORT", 0)
METRICS_HOST = env_str("METRICS_HOST", "127.0.0.1")
# Who may scrape: with METRICS_TOKEN, requests bearing it; with METRICS_ALLOWED_ADDRESSES,
# clients from those networks; with both, both; with neither, loopback clients only.
METRICS_TOKEN = env_token("METRICS_TOKEN")
METRICS_ALLOWED_ADDRESSES = env_networks("METRICS_ALLOWED_ADDRESSES")
if METRICS_ENABLED:
    # prometheus_client reads this variable itself, when it is first imported (after this).
    PROMETHEUS_MULTIPROC_DIR = env_metrics_dir("PROMETHEUS_MULTIPROC_DIR")

# Where people ask for access to a model (the Models page's "Request access" link); no link
# when unset.
HELPDESK_URL = env_str("HELPDESK_URL", "")
# Asynchronous jobs (apps/jobs).
# Most inputs (jobs) one submission may carry.
JOBS_MAX_INPUTS = env_int("JOBS_MAX_INPUTS", 100, minimum=1)
# The largest share of a model's slots jobs may take together, so interactive requests always
# find some (at least one slot goes to jobs).
JOBS_MAX_SLOT_SHARE = env_decimal("JOBS_MAX_SLOT_SHARE", Decimal("0.5"))
# Days a job and its output are kept before the periodic task deletes them.
JOBS_RETENTION_DAYS = env_int("JOBS_RETENTION_DAYS", 7, minimum=1)
# A job whose worker gave no sign of life for this long is retried once, then failed.
JOBS_LOST_SECONDS = env_int("JOBS_LOST_SECONDS", 60, minimum=2)
# Run jobs in a thread of the web process (no Redis: `make run`) or on Celery workers.
JOBS_IN_PROCESS = env_bool("JOBS_IN_PROCESS", REDIS_URL is None)
# The Celery queue jobs go to (workers started without --queues take "celery").
JOBS_QUEUE = env_str("JOBS_QUEUE", "celery")

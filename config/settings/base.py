"""Settings shared by every environment. Values come from environment variables (see README)."""

from __future__ import annotations

from pathlib import Path

from .env import env_bool, env_db, env_float, env_int, env_list, env_rate, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_gis",
    "django_filters",
    "drf_spectacular",
    "accounts",
    "territories",
    "quotas",
    "analytics",
    "integrations",
    "tessera_common",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    }
]

DATABASES = {"default": env_db("DATABASE_URL", "postgis://postgres@127.0.0.1:5432/tessera")}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
# The working set (accounts, assignments, bookings) stays in memory: an index probe costs little
# more than a sequential page. With PostgreSQL's default of 4 and fresh statistics, a dense z11
# tile joined all 100k assignments by hash (44 ms) instead of probing its 1,400 (19 ms).
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c random_page_cost=1.1")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TESSERA_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".local" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# GeoDjango finds the system GDAL/GEOS; these let an installation point at other builds.
_gdal = env_str("GDAL_LIBRARY_PATH", "")
if _gdal:
    GDAL_LIBRARY_PATH = _gdal
_geos = env_str("GEOS_LIBRARY_PATH", "")
if _geos:
    GEOS_LIBRARY_PATH = _geos

# Debian 12 ships GDAL 3.6, older than Django 5.2 formally supports; every GeoDjango feature
# Tessera uses works on it, so the warning is silenced rather than printed on every command.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

# The project's own state/county outlines are the base layer; an external raster basemap
# (e.g. an OSM tile server you are allowed to use) is optional and off by default.
TESSERA_BASEMAP_URL = env_str("TESSERA_BASEMAP_URL", "")
# Tile servers such as OpenStreetMap require their attribution to be shown with the tiles.
TESSERA_BASEMAP_ATTRIBUTION = env_str("TESSERA_BASEMAP_ATTRIBUTION", "")

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss"))

CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, schemes=("redis", "rediss", "memory"))
CELERY_RESULT_BACKEND = None  # progress and results live on job rows, not in Celery's backend
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A balance job on 100k accounts is seconds; the limits catch a runaway, not normal work.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 15 * 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 20 * 60, minimum=1)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    "activate-due-plans": {
        "task": "territories.activate_due_plans",
        "schedule": env_int("TESSERA_PLAN_ACTIVATION_INTERVAL", 3600, minimum=60),
    },
    # A delivery whose worker died between attempts is sent again (integrations/webhooks.py).
    "requeue-stalled-webhooks": {
        "task": "integrations.requeue_stalled_webhooks",
        "schedule": env_int("TESSERA_WEBHOOK_REQUEUE_INTERVAL", 300, minimum=30),
    },
    # Dashboards' read caches that a write made stale are recomputed here, not in a manager's request
    # (bookings, moves and publishing also queue it at once: analytics/signals.py).
    "warm-read-caches": {
        "task": "analytics.warm_read_caches",
        "schedule": env_int("TESSERA_READ_CACHE_WARM_INTERVAL", 300, minimum=10),
    },
    "check-warning-signs": {
        "task": "analytics.check_warnings",
        "schedule": env_int("TESSERA_WARNING_CHECK_INTERVAL", 24 * 3600, minimum=300),
    },
}
# Warning signs (analytics): when a gap, a load or a drift is worth a manager's attention.
# Attainment gap: best minus worst pacing (booked / expected to date) among sibling territories.
TESSERA_WARN_ATTAINMENT_GAP = env_float("TESSERA_WARN_ATTAINMENT_GAP", 0.30, minimum=0.0)
# A rep's yearly selling hours at 1.0 FTE; workload above capacity × this (× the margin) warns.
TESSERA_HOURS_PER_FTE = env_float("TESSERA_HOURS_PER_FTE", 1600.0, minimum=1.0)
TESSERA_WARN_CAPACITY_MARGIN = env_float("TESSERA_WARN_CAPACITY_MARGIN", 0.10, minimum=0.0)
# Balance drift: relative change of a territory's share of a metric since the plan was published.
TESSERA_WARN_DRIFT_TOLERANCE = env_float("TESSERA_WARN_DRIFT_TOLERANCE", 0.10, minimum=0.0)
# Unassigned accounts in the active plan: warn from this many on.
TESSERA_WARN_UNASSIGNED_MIN = env_int("TESSERA_WARN_UNASSIGNED_MIN", 1, minimum=1)
# Seconds the optimizer may spend on each "a preview moves N% of accounts" figure.
TESSERA_WARN_PREVIEW_SECONDS = env_float("TESSERA_WARN_PREVIEW_SECONDS", 20.0, minimum=1.0, maximum=600.0)

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes a request without credentials a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # A logged-in user or a token; a token also needs its scope: read for GET, write otherwise,
    # or the view's own `required_scope` (e.g. "route").
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.ApiAccess"],
    # Each API token has its own budget; over it → 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": env_rate("TESSERA_API_TOKEN_RATE", "1200/minute")},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "tessera_common.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "tessera_common.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tessera API",
    "DESCRIPTION": "Territory and quota planning for CRM integrations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from static/vendor/swagger-ui (no CDN: /api/docs/ works offline); no validator badge,
    # which would call validator.swagger.io.
    "SWAGGER_UI_DIST": "/" + STATIC_URL.strip("/") + "/vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": "/" + STATIC_URL.strip("/") + "/vendor/swagger-ui/favicon-32x32.png",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None, "persistAuthorization": True},
    "ENUM_NAME_OVERRIDES": {
        "WebhookEventEnum": "integrations.choices.WebhookEvent",
        "WebhookDeliveryStatusEnum": "integrations.choices.DeliveryStatus",
        "ImportJobStatusEnum": "integrations.choices.ImportStatus",
        "ImportJobKindEnum": "integrations.choices.ImportKind",
        "BalanceJobStatusEnum": "territories.choices.JobStatus",
        "AccountStatusEnum": "accounts.choices.AccountStatus",
    },
    # Every operation documents the one error shape {"message", "errors"} as its default response.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "integrations.openapi.add_error_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("TESSERA_LOG_LEVEL", "INFO")},
}

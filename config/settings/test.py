"""Settings for the pytest suite: the real PostGIS and Redis, nothing faked globally."""

import os
from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed: tests create many users
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Generous for the suite (one test sends many requests with one token); the throttling tests set
# their own small rate.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "100000/minute"}}  # noqa: F405

# Tests that commit (live server, real workers) leave Celery messages behind that no test consumes
# (relief, webhook deliveries, owner assignment). On a Redis database of their own they never reach
# the development worker of `make run`, which would run them against the wrong database. The real
# workers the tests start use these settings too.
if "CELERY_BROKER_URL" not in os.environ:
    _broker = urlsplit(REDIS_URL)  # noqa: F405
    CELERY_BROKER_URL = urlunsplit(_broker._replace(path="/15"))

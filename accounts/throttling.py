"""Request rate limits per API token.

One integration that loops must not starve the others, so each token has its own budget
(settings REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token"], from TESSERA_API_TOKEN_RATE). Browser
sessions are not throttled here: a person clicking is not the risk this guards against.

The counts live in Redis (REDIS_URL), not in Django's default in-memory cache: every web process
must see the same count, or N processes would allow N times the rate. Keys carry the database name
so that installations (or test databases) sharing one Redis never count each other's tokens. If
Redis cannot be reached the request is let through and a warning logged: a rate limit must not
take the API down.
"""

from __future__ import annotations

import logging
from functools import cached_property

from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .permissions import token_of

logger = logging.getLogger(__name__)


class _SharedCounts:
    """The Redis cache behind the throttle, created on first use (no connection at import)."""

    @cached_property
    def cache(self) -> RedisCache:
        return RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "tessera-throttle", "TIMEOUT": None})


_shared = _SharedCounts()


class TokenRateThrottle(SimpleRateThrottle):
    """N requests per period per token; over the budget → 429 with Retry-After (seconds)."""

    scope = "token"

    @property
    def cache(self):  # type: ignore[override]
        return _shared.cache

    def __init__(self):
        # Read at call time rather than at import (DRF's default), so that a changed setting
        # (tests, a reloaded configuration) takes effect without re-importing this module.
        # A missing rate means no limit.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_rate(self):
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        return rates.get(self.scope)

    def get_cache_key(self, request, view):
        token = token_of(request)
        if token is None:
            return None
        return f"{self.scope}:{connection.settings_dict['NAME']}:{token.pk}"

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            logger.warning("API token throttling skipped: Redis is not reachable (%s)", exc)
            return True

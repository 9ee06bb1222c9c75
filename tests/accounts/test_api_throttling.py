"""Per-token throttling: 429 with Retry-After, per token, sessions not throttled; strict rate setting."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env_rate

from .api_fixtures import *  # noqa: F403  (fixtures live_world, client_as)

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_per_minute(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "3/minute"}}


def test_429_with_retry_after_per_token(live_world, client_as, three_per_minute):
    first = client_as(live_world.integration, scopes=["read"])
    for _ in range(3):
        assert first.get("/api/v1/accounts/").status_code == 200
    response = first.get("/api/v1/accounts/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert set(response.json()) == {"message", "errors"}
    # Another token has its own budget, and a browser session is not throttled.
    assert client_as(live_world.integration, scopes=["read"]).get("/api/v1/accounts/").status_code == 200
    session = client_as(live_world.planner)
    assert all(session.get("/api/v1/accounts/").status_code == 200 for _ in range(5))


@pytest.mark.parametrize("raw", ["fast", "10", "10/week", "0/minute", "-1/s", "1.5/s"])
def test_rate_setting_is_parsed_strictly(monkeypatch, raw):
    monkeypatch.setenv("TESSERA_API_TOKEN_RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="TESSERA_API_TOKEN_RATE"):
        env_rate("TESSERA_API_TOKEN_RATE", "600/minute")


def test_rate_setting_accepts_periods(monkeypatch):
    monkeypatch.setenv("TESSERA_API_TOKEN_RATE", " 50 / hour ")
    assert env_rate("TESSERA_API_TOKEN_RATE", "600/minute") == "50/hour"


def test_redis_down_lets_requests_through(live_world, client_as, three_per_minute, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from accounts import throttling

    def broken(*args, **kwargs):
        raise RedisConnectionError("down")

    monkeypatch.setattr(throttling._shared.cache, "get", broken)
    client = client_as(live_world.integration, scopes=["read"])
    assert all(client.get("/api/v1/accounts/").status_code == 200 for _ in range(5))


def test_counts_are_shared_between_processes(live_world, client_as, three_per_minute):
    """The count lives in Redis, so another web process (a fresh throttle instance) sees it."""
    from accounts.models import ApiToken
    from accounts.throttling import TokenRateThrottle

    client = client_as(live_world.integration, scopes=["read"])
    client.get("/api/v1/accounts/")
    token = ApiToken.objects.latest("created")

    class Request:
        auth = token

    throttle = TokenRateThrottle()
    assert len(throttle.cache.get(throttle.get_cache_key(Request(), None))) == 1

"""Fixtures for the accounts/reps API tests: the shared `world` with its plan in effect today, and
API clients logged in as a persona or holding a token with chosen scopes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_token_create
from territories.choices import PlanStatus


@pytest.fixture
def live_world(world):
    """`world` with its plan active since a month ago, so managers and reps see it by default."""
    plan = world.plan
    plan.status = PlanStatus.ACTIVE
    plan.effective_from = timezone.localdate() - dt.timedelta(days=30)
    plan.published_at = timezone.now()
    plan.save()
    return world


@pytest.fixture
def client_as():
    """client_as(user) → a session client; client_as(user, scopes=[...]) → a token client."""

    def make(user=None, scopes=None):
        client = APIClient()
        if user is None:
            return client
        if scopes is None:
            client.force_authenticate(user=None)
            client.force_login(user)
        else:
            _, key = api_token_create(user=user, name="test", scopes=scopes)
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return make


__all__ = ["client_as", "live_world"]

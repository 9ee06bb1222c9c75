"""The warning thresholds are read strictly: a malformed value stops start-up naming the variable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env_float


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "0.5.1", ""])
def test_env_float_refuses_what_is_not_a_finite_number(monkeypatch, raw):
    monkeypatch.setenv("TESSERA_WARN_ATTAINMENT_GAP", raw)
    with pytest.raises(ImproperlyConfigured, match="TESSERA_WARN_ATTAINMENT_GAP"):
        env_float("TESSERA_WARN_ATTAINMENT_GAP", 0.3, minimum=0.0)


def test_env_float_bounds_and_default(monkeypatch):
    monkeypatch.delenv("TESSERA_WARN_PREVIEW_SECONDS", raising=False)
    assert env_float("TESSERA_WARN_PREVIEW_SECONDS", 20.0, minimum=1.0) == 20.0
    monkeypatch.setenv("TESSERA_WARN_PREVIEW_SECONDS", "0.5")
    with pytest.raises(ImproperlyConfigured, match="at least 1.0"):
        env_float("TESSERA_WARN_PREVIEW_SECONDS", 20.0, minimum=1.0, maximum=600.0)
    monkeypatch.setenv("TESSERA_WARN_PREVIEW_SECONDS", "601")
    with pytest.raises(ImproperlyConfigured, match="at most 600.0"):
        env_float("TESSERA_WARN_PREVIEW_SECONDS", 20.0, minimum=1.0, maximum=600.0)
    monkeypatch.setenv("TESSERA_WARN_PREVIEW_SECONDS", " 45 ")
    assert env_float("TESSERA_WARN_PREVIEW_SECONDS", 20.0, minimum=1.0) == 45.0

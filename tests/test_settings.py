"""Settings come from the environment; a bad value stops start-up naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DJANGO_DEBUG", "maybe"),
        ("DATABASE_CONN_MAX_AGE", "sixty"),
        ("DATABASE_URL", "mysql://root@localhost/tessera"),
        ("REDIS_URL", "localhost:6379"),
        ("CELERY_TASK_TIME_LIMIT", "0"),
    ],
)
def test_bad_value_stops_start_up_naming_the_variable(variable, value):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", variable: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr


def test_production_refuses_the_default_secret_key():
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "config.settings.production"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("X_BOOL", "Yes")
    monkeypatch.setenv("X_INT", "12")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_bool("X_BOOL", False) is True
    assert env.env_bool("X_MISSING", True) is True
    assert env.env_int("X_INT", 0, minimum=1) == 12
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    assert env.env_db("X_DB", "postgres://u@h:5433/db")["ENGINE"] == "django.contrib.gis.db.backends.postgis"
    monkeypatch.setenv("X_INT", "-1")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env.env_int("X_INT", 0, minimum=0)

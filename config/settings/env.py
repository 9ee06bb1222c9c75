"""Strict reading of environment variables.

django-environ parses URLs well but treats a malformed boolean as False and lets a bad number
surface as a bare ValueError deep inside Django's start-up. Every typed read goes through here so
that a bad value stops start-up with ImproperlyConfigured naming the variable.
"""

from __future__ import annotations

import os
import re

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

_env = environ.Env()


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the environment variable {name}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={raw!r} must be a finite number.")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at most {maximum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_db(name: str, default: str) -> dict:
    raw = os.environ.get(name, default)
    if not raw.startswith(("postgis://", "postgres://", "postgresql://")):
        raise ImproperlyConfigured(f"{name}={raw!r} must be a postgis:// URL (PostgreSQL with PostGIS).")
    try:
        config = _env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for a malformed URL
        raise ImproperlyConfigured(f"{name}={raw!r} is not a valid database URL: {exc}") from None
    # Tessera needs PostGIS whatever scheme was written.
    config["ENGINE"] = "django.contrib.gis.db.backends.postgis"
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}={raw!r} names no database.")
    return config


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default)
    if not raw.startswith(tuple(f"{s}://" for s in schemes)):
        raise ImproperlyConfigured(f"{name}={raw!r} must start with one of: {', '.join(schemes)}://")
    return raw


def env_rate(name: str, default: str) -> str:
    """A request rate for DRF throttling: '<count>/<second|minute|hour|day>' (also s, min, h, d)."""
    raw = os.environ.get(name, default)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*", raw)
    if match is None or int(match.group(1)) < 1:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate: use <count>/<period> with a count of at least 1 and a "
            "period of second, minute, hour or day, e.g. 600/minute."
        )
    return f"{int(match.group(1))}/{match.group(2)}"

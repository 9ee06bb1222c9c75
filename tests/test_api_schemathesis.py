"""Property-based API testing with schemathesis against the app's own OpenAPI schema.

Every operation of /api/schema/ is called in-process through WSGI (no network, no server) as an
authenticated planner, with generated valid data and generated invalid (negative) data. The test
fails on any 5xx and on any response that does not conform to the schema (status code, content
type, headers, body), and lists every failing operation with the example that failed.

Path ids are mostly swapped for ids of real objects of the `world` fixture, so that operations on one
object are exercised beyond a 404. The number of examples per operation and mode is bounded
(TESSERA_SCHEMATHESIS_EXAMPLES, default 12) so the whole run stays within a few minutes on CI;
TESSERA_SCHEMATHESIS_PATHS (a regex) narrows it to some paths when digging locally.

Why not schemathesis' pytest plugin: its lazy, fixture-based loader (needed here, since the schema
and the token need the test database) relies on a pytest internal that pytest 9 removed.
"""

from __future__ import annotations

import os
import random
import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import api_token_create

EXAMPLES = int(os.environ.get("TESSERA_SCHEMATHESIS_EXAMPLES", "12"))
PATHS = os.environ.get("TESSERA_SCHEMATHESIS_PATHS", "")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_app(settings):
    # The per-token rate limit guards production; this test makes thousands of calls in minutes.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": None}}
    # Django closes "obsolete" connections when a request starts and ends; inside a test's
    # transaction that would close the test's own connection. Django's test client unhooks the
    # same receiver for the same reason.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def known_ids(world) -> dict[str, list[int]]:
    """Ids of real objects, by path parameter name or by the path's first segment."""
    from integrations.services import webhook_subscription_create

    hook = webhook_subscription_create(
        owner=world.planner, url="http://127.0.0.1:9/never-called", events=["plan.published"]
    )
    leaf = world.leaves["E-T1"]
    account = world.accounts["E-T1"][0]
    return {
        "plans": [world.plan.pk],
        "territories": [leaf.pk, world.east.pk],
        "accounts": [account.pk],
        "reps": [world.reps["E-T1"].pk],
        "webhooks": [hook.pk],
        "plan_id": [world.plan.pk],
        "account_id": [account.pk],
        "territory_id": [leaf.pk],
    }


def _use_known_ids(case, known: dict[str, list[int]]) -> None:
    segments = [s for s in case.path.split("/") if s and s not in ("api", "v1")]
    resource = segments[0] if segments else ""
    params = case.path_parameters or {}
    chooser = random.Random(repr(sorted(params.items())))
    for name, value in list(params.items()):
        if not isinstance(value, int) or chooser.random() < 0.25:
            continue  # keep some random ids: an unknown object must be a clean 404
        pool = known.get(name) or (known.get(resource) if name in ("id", "pk") else None)
        if pool:
            params[name] = chooser.choice(pool)


def _short(case) -> str:
    parts = [f"{case.method} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={case.query!r}")
    if case.body is not None and not isinstance(case.body, bytes | type(schemathesis.core.NOT_SET)):
        parts.append(f"body={case.body!r}"[:300])
    return " ".join(parts)


def _check_operation(operation, mode, headers: dict, known: dict) -> str | None:
    """Run one operation in one generation mode; the first failure as text, or None."""
    seen: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        _use_known_ids(case, known)
        seen[:] = [_short(case)]
        # Each call in a savepoint: one example's writes or errors never leak into the next.
        with transaction.atomic():
            try:
                case.call_and_validate(headers=headers, checks=CHECKS)
            finally:
                transaction.set_rollback(True)

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid: an operation without parameters or body has no negative cases.
        return None
    except (Exception, BaseExceptionGroup) as exc:  # a failed check or a crash: reported at the end
        lines = [line for line in str(exc).strip().splitlines() if line.strip()][:14]
        return f"{operation.label} [{mode.value}] {seen[0] if seen else ''}\n    " + "\n    ".join(lines)
    return None


def test_api_conforms_to_its_schema(db, world, wsgi_app, known_ids):
    _, key = api_token_create(user=world.planner, name="schemathesis", scopes=["read", "write", "route"])
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    headers = {"Authorization": f"Token {key}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if PATHS and not re.search(PATHS, operation.path):
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _check_operation(operation, mode, headers, known_ids)
            if failure:
                failures.append(failure)
    assert operations, "the schema has no operations (or TESSERA_SCHEMATHESIS_PATHS matched none)"
    assert not failures, f"{len(failures)} failing operation(s):\n" + "\n".join(failures)


def test_the_harness_reports_a_server_error(db, world, wsgi_app, known_ids, monkeypatch):
    """The checks bite: an endpoint that crashes is reported with its operation and example."""

    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("integrations.api.views.selectors.import_job_list", crash)
    _, key = api_token_create(user=world.planner, name="schemathesis", scopes=["read", "write"])
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    [operation] = [
        r.ok()
        for r in schema.get_all_operations()
        if r.ok().path == "/api/v1/imports/" and r.ok().method == "get"
    ]
    failure = _check_operation(
        operation, GenerationMode.POSITIVE, {"Authorization": f"Token {key}"}, known_ids
    )
    assert failure is not None and failure.startswith("GET /api/v1/imports/ [positive]")
    assert "Server error" in failure

"""Permission matrix: every persona × every API endpoint × every method.

Endpoints are read from the OpenAPI schema at run time, so endpoints added later are covered without
editing this file. Each persona runs through all operations on the shared `world` (its plan in
effect today), GETs first, then writes with an empty JSON body; DELETE targets an id that does not
exist, so that permission is tested without destroying the world half-way.

Expected, for every endpoint:
- anonymous: 401;
- an API token without the scope an operation needs (read for GET, write otherwise, route for lead
  routing): 403 (naming the scope, unless the user's role is refused first); with the scope, never a
  scope refusal;
- outsider (a rep login with no territory): no write succeeds, and no account or rep is shown;
- rep: no write succeeds (except reads sent as POST: routing, selection, rule preview), and GETs show
  nothing outside their own territory; accounts and reps writes are 403;
- manager: GETs show nothing outside their subtree; accounts and reps writes are 403;
- planner and admin: never refused (no 401/403);
- nobody ever gets a 5xx.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.permissions import ANY_SCOPE, required_scope
from accounts.services import api_token_create
from tests.accounts.api_fixtures import *  # noqa: F403  (fixture live_world)

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SAFE = {"GET"}
MISSING = 999_999
# Reads that are sent as POST because their input is large (a lead, a polygon, a rule to try).
READS_BY_POST = (r"^route/$", r"^route/batch/$", r"/selection/$", r"/rules/preview/$")
ACCOUNT_AND_REP_WRITES = r"^(accounts|reps)/(\{id\}/|bulk/)?$"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # as in the schema, relative to /api/v1/

    @property
    def safe(self) -> bool:
        return self.method in SAFE

    def matches(self, *patterns: str) -> bool:
        return any(re.search(p, self.template) for p in patterns)


def _operations() -> list[Operation]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, item in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method in METHODS:
            if method in item:
                operations.append(Operation(method.upper(), path[len("/api/v1/") :]))
    # Safe methods first: the writes below may change the world the reads look at.
    return sorted(operations, key=lambda op: (not op.safe, op.template, op.method))


def _url(op: Operation, world) -> str:
    account = world.accounts["E-T1"][0]
    ids = {
        "accounts": account.pk,
        "plans": world.plan.pk,
        "reps": world.reps["E-T1"].pk,
        "territories": world.leaves["E-T1"].pk,
    }

    def value(match: re.Match) -> str:
        name = match.group(1)
        if op.method == "DELETE":
            return str(MISSING)
        if name == "account_id":
            return str(account.pk)
        before = op.template[: match.start()].rstrip("/").split("/")[-1]
        return str(ids.get(before, MISSING)) if name in ("id", "pk") else str(MISSING)

    return "/api/v1/" + re.sub(r"\{(\w+)\}", value, op.template)


def _scope_needed(op: Operation, url: str) -> str:
    match = resolve(url)
    view_class = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)

    class _Request:
        method = op.method

    view = view_class(**getattr(match.func, "initkwargs", {}))
    actions = getattr(match.func, "actions", None)
    if actions:
        view.action = actions.get(op.method.lower())
    return required_scope(_Request(), view)


@dataclass
class Persona:
    name: str
    client: APIClient
    scopes: tuple[str, ...] | None = None  # a token's scopes; None for a session


def _personas(world, name: str) -> Persona:
    client = APIClient()
    users = {
        "outsider": world.outsider,
        "rep": world.rep_user,
        "manager": world.manager_west,
        "planner": world.planner,
        "admin": world.admin,
    }
    tokens = {
        "token_read": ("read",),
        "token_write": ("write",),
        "token_route": ("route",),
        "token_full": ("read", "write", "route"),
    }
    if name in users:
        client.force_login(users[name])
        return Persona(name, client)
    if name in tokens:
        _, key = api_token_create(user=world.integration, name=name, scopes=tokens[name])
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return Persona(name, client, tokens[name])
    return Persona(name, client)


def _secrets(world, persona: str) -> set[str]:
    """Things the persona must never see: external ids of accounts and reps outside its scope."""
    visible = {"rep": {"E-T1"}, "manager": {"W-T1", "W-T2"}, "outsider": set()}.get(persona)
    if visible is None:
        return set()
    hidden = [code for code in world.leaves if code not in visible]
    found = {account.external_id for code in hidden for account in world.accounts[code]}
    found |= {world.reps[code].external_id for code in hidden}
    return found


def _judge(
    persona: Persona, op: Operation, scope: str, status: int, body: dict, text: str, world
) -> str | None:
    """None when the outcome is what this persona may get; otherwise what is wrong."""
    message = body.get("message", "") if isinstance(body, dict) else ""
    if status >= 500:
        return f"server error {status}"
    if persona.name == "anonymous":
        return None if status == 401 else f"expected 401, got {status}"
    if status == 401:
        return f"authenticated persona got 401 ({message})"
    scope_refusal = status == 403 and "scope" in message
    if persona.scopes is not None:
        allowed = scope == ANY_SCOPE or scope in persona.scopes
        # Refused either for the scope or, first, for the role of the token's user: both are 403.
        if not allowed and status != 403:
            return f"token with {list(persona.scopes)} needs '{scope}': expected 403, got {status}"
        if allowed and scope_refusal:
            return f"token with {list(persona.scopes)} refused for scope: {message}"
        return None
    if persona.name in ("planner", "admin"):
        return f"{persona.name} refused with 403: {message}" if status == 403 else None
    if not op.safe:
        if persona.name in ("rep", "manager") and op.matches(ACCOUNT_AND_REP_WRITES) and status != 403:
            return f"{persona.name} writing accounts/reps: expected 403, got {status}"
        if persona.name in ("rep", "outsider") and 200 <= status < 300 and not op.matches(*READS_BY_POST):
            return f"{persona.name} write succeeded with {status}"
        return None
    leaked = sorted(secret for secret in _secrets(world, persona.name) if secret in text)
    if leaked:
        return f"{persona.name} sees what is outside their scope: {leaked[:5]}"
    return None


PERSONAS = [
    "anonymous", "outsider", "rep", "manager", "planner", "admin",
    "token_read", "token_write", "token_route", "token_full",
]  # fmt: skip


@pytest.mark.parametrize("persona_name", PERSONAS)
def test_permission_matrix(live_world, persona_name):
    world = live_world
    persona = _personas(world, persona_name)
    operations = _operations()
    assert len(operations) > 20 and any(op.template == "accounts/bulk/" for op in operations)
    failures = []
    for op in operations:
        url = _url(op, world)
        scope = _scope_needed(op, url)
        body = None if op.safe else json.dumps({})
        response = persona.client.generic(op.method, url, body or "", content_type="application/json")
        text = response.content.decode("utf-8", "replace")
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        problem = _judge(persona, op, scope, response.status_code, data, text, world)
        if problem:
            failures.append(f"{op.method} {url}: {problem}")
    assert not failures, f"{len(failures)} of {len(operations)} operations:\n" + "\n".join(failures)

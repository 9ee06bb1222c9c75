"""API tokens: created hashed, shown once, authenticate as their user, revocable."""

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import api_token_create, api_token_revoke
from tessera_common.errors import ApplicationError

pytestmark = pytest.mark.django_db


def test_key_is_stored_only_as_a_hash(world):
    token, key = api_token_create(user=world.integration, name="CRM", scopes=["read", "route"])
    assert key.startswith("tsr_") and key not in (token.key_hash, token.prefix)
    assert token.key_hash == ApiToken.hash_key(key) and key.startswith(token.prefix)
    assert token.scopes == ["read", "route"]


def test_bad_scopes_and_names_are_refused(world):
    with pytest.raises(ApplicationError, match="Unknown token scope"):
        api_token_create(user=world.integration, name="x", scopes=["admin"])
    with pytest.raises(ApplicationError, match="at least one scope"):
        api_token_create(user=world.integration, name="x", scopes=[])
    with pytest.raises(ApplicationError, match="needs a name"):
        api_token_create(user=world.integration, name=" ", scopes=["read"])


def test_token_authenticates_as_its_user_until_revoked(world):
    token, key = api_token_create(user=world.integration, name="CRM", scopes=["read"])
    client = APIClient()
    assert client.get("/api/v1/me/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json() == {
        "username": "crm",
        "role": "integration",
        "rep_external_id": None,
        "token_scopes": ["read"],
    }
    token.refresh_from_db()
    assert token.last_used is not None
    api_token_revoke(token=token)
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid or revoked token."
    client.credentials(HTTP_AUTHORIZATION="Token")
    assert "Authorization: Token <key>" in client.get("/api/v1/me/").json()["message"]


def test_command_prints_the_key_once(world, capsys):
    call_command("create_api_token", "crm", "--name", "Sync", "--scope", "read", "--scope", "write")
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    assert ApiToken.objects.get(key_hash=ApiToken.hash_key(key)).scopes == ["read", "write"]
    with pytest.raises(CommandError, match="No user named"):
        call_command("create_api_token", "nobody", "--name", "x", "--scope", "read")

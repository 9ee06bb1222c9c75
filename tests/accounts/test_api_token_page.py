"""The /settings/tokens/ page: own tokens, scopes, the key shown exactly once, revoke; admins see all."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import ApiToken
from accounts.services import api_token_create

pytestmark = pytest.mark.django_db

URL = "/settings/tokens/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_login_required(db):
    response = Client().get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_create_shows_the_key_once_and_it_works(world):
    client = logged_in(world.manager_west)
    response = client.post(URL, {"name": "My sync", "scopes": ["read", "route"]}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    key = re.search(r'id="new-key"[^>]*value="(tsr_[^"]+)"', page).group(1)
    token = ApiToken.objects.get(name="My sync")
    assert token.user == world.manager_west and token.scopes == ["read", "route"]
    assert token.key_hash == ApiToken.hash_key(key) and key not in token.key_hash
    assert key not in client.get(URL).content.decode()  # shown once only
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/me/").json()["username"] == "manager.west"


def test_bad_form_names_the_fields(world):
    client = logged_in(world.rep_user)
    response = client.post(URL, {"name": "", "scopes": []})
    assert response.status_code == 200
    page = response.content.decode()
    assert "This field is required." in page and "Choose at least one scope." in page
    response = client.post(URL, {"name": "x", "scopes": ["admin"]})
    assert "is not one of the available choices" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_users_see_and_revoke_only_their_own(world):
    mine, _ = api_token_create(user=world.rep_user, name="Mine", scopes=["read"])
    theirs, _ = api_token_create(user=world.integration, name="Theirs", scopes=["read"])
    client = logged_in(world.rep_user)
    page = client.get(URL).content.decode()
    assert "Mine" in page and "Theirs" not in page and 'name="owner"' not in page
    assert client.post(f"{URL}{theirs.pk}/revoke/").status_code == 404
    assert client.post(f"{URL}{mine.pk}/revoke/").status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked and not theirs.revoked
    assert client.get(f"{URL}{mine.pk}/revoke/").status_code == 405


def test_admin_sees_all_and_creates_for_the_integration_user(world):
    api_token_create(user=world.rep_user, name="Rep's", scopes=["read"])
    client = logged_in(world.admin)
    page = client.get(URL).content.decode()
    assert "Rep&#x27;s" in page and "All tokens" in page and 'name="owner"' in page
    response = client.post(URL, {"name": "CRM", "scopes": ["write", "read"], "owner": world.integration.pk})
    assert response.status_code == 302
    assert ApiToken.objects.get(name="CRM").user == world.integration
    # A non-admin cannot pick another owner: the field is ignored.
    logged_in(world.rep_user).post(URL, {"name": "Sneaky", "scopes": ["read"], "owner": world.admin.pk})
    assert ApiToken.objects.get(name="Sneaky").user == world.rep_user

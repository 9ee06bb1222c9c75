"""Who may call the API, and with which token scope.

`ApiAccess` is the project-wide default permission (settings REST_FRAMEWORK): every endpoint of
every app needs a logged-in user or a valid token, and a token may only do what its scopes allow:
safe methods need `read`, other methods `write`, and a view that sets `required_scope` (for example
`required_scope = "route"` on lead routing) needs that scope instead. A browser session is not
limited by scopes; it is the user's own role and scope that count, as for a token's user.

What the user may see is not decided here: the selectors scope every query (a manager their
subtree, a rep their own territories). Roles that may write are checked by `CanEditAccounts` on the
views that edit accounts and reps.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .choices import Role, TokenScope
from .models import ApiToken

ANY_SCOPE = "any"
"""`required_scope = ANY_SCOPE`: any valid token may call the view (e.g. `me/`, to check a token)."""


def token_of(request) -> ApiToken | None:
    """The API token the request was authenticated with, or None for a browser session."""
    return request.auth if isinstance(request.auth, ApiToken) else None


def required_scope(request, view) -> str:
    """The token scope a request to `view` needs.

    A view may set `required_scope` to one scope for every method, or to a dict of method → scope
    (methods it leaves out fall back to read for safe methods, write for the others)."""
    wanted = getattr(view, "required_scope", None)
    if isinstance(wanted, dict):
        wanted = wanted.get(request.method)
    if wanted:
        return wanted
    return TokenScope.READ if request.method in SAFE_METHODS else TokenScope.WRITE


class ApiAccess(BasePermission):
    """An authenticated, active user; with a token, the token's scope for this request."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            # NotAuthenticated becomes a 401 with WWW-Authenticate: Token (see the authentication).
            raise exceptions.NotAuthenticated("Log in or send the header Authorization: Token <key>.")
        if not user.is_active:
            raise exceptions.PermissionDenied("This user is inactive.")
        token = token_of(request)
        if token is None:
            return True
        scope = required_scope(request, view)
        if scope == ANY_SCOPE or scope in token.scopes:
            return True
        have = ", ".join(token.scopes) or "none"
        raise exceptions.PermissionDenied(
            f"This API token lacks the '{scope}' scope needed for {request.method} here "
            f"(it has: {have}). Create a token with the '{scope}' scope on /settings/tokens/."
        )


def can_edit_accounts(user) -> bool:
    """Planners, admins and CRM integrations load and edit accounts and reps; managers and reps
    only read them."""
    return bool(user and user.is_authenticated) and (user.can_plan or user.role == Role.INTEGRATION)


class CanEditAccounts(ApiAccess):
    """ApiAccess, and for writes a role that may edit accounts and reps."""

    def has_permission(self, request, view) -> bool:
        super().has_permission(request, view)
        if request.method in SAFE_METHODS or can_edit_accounts(request.user):
            return True
        raise exceptions.PermissionDenied(
            "Only planners, admins and CRM integrations may create, change or delete accounts and reps; "
            f"your role ({request.user.get_role_display()}) may only read them."
        )

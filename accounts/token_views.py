"""The /settings/tokens/ page: API tokens for CRM integrations.

Everyone manages their own tokens; admins see and revoke everyone's and may create a token for
another user (typically the integration's own user, which never logs in). A new key is shown once:
it travels from the create request to the next page in the session and is removed as it is shown,
so a reload or the back button cannot show it again. Only its hash is stored.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from tessera_common.errors import ApplicationError

from .choices import Role, TokenScope
from .models import ApiToken, User
from .services import api_token_create, api_token_revoke

_NEW_KEY = "tessera_new_token_key"


def _is_admin(user) -> bool:
    return user.is_superuser or user.role == Role.ADMIN


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this token, e.g. “Salesforce sync”.")
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="read: GET anything the owner may see; write: create, change, delete and bulk-load; "
        "route: ask who owns a new lead.",
        error_messages={"required": "Choose at least one scope."},
    )
    owner = forms.ModelChoiceField(
        queryset=User.objects.none(),
        required=False,
        help_text="The token acts as this user, with this user's role and scope.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if _is_admin(user):
            self.fields["owner"].queryset = User.objects.filter(is_active=True).order_by("username")
            self.fields["owner"].initial = user.pk
            self.fields["owner"].label_from_instance = lambda u: f"{u.username} ({u.get_role_display()})"
        else:
            del self.fields["owner"]


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    user = request.user
    if request.method == "POST":
        form = TokenForm(request.POST, user=user)
        if form.is_valid():
            owner = form.cleaned_data.get("owner") or user
            try:
                token, key = api_token_create(
                    user=owner, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                request.session[_NEW_KEY] = {"id": token.pk, "key": key}
                return redirect("tokens")
    else:
        form = TokenForm(user=user)

    new = request.session.pop(_NEW_KEY, None)
    tokens = ApiToken.objects.select_related("user").order_by("revoked", "-created")
    if not _is_admin(user):
        tokens = tokens.filter(user=user)
    new_token = None
    if new is not None:
        new_token = tokens.filter(pk=new["id"]).first()
    return render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "tokens": tokens,
            "new_token": new_token,
            "new_key": new["key"] if new_token is not None else None,
            "show_owner": _is_admin(user),
        },
    )


@login_required
@require_POST
def token_revoke(request, pk: int):
    tokens = ApiToken.objects.all() if _is_admin(request.user) else ApiToken.objects.filter(user=request.user)
    token = get_object_or_404(tokens, pk=pk)
    if token.revoked:
        raise Http404("This token is already revoked.")
    api_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked; its key no longer works.")
    return redirect("tokens")

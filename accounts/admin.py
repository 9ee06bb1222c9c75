"""Admin for logins, API tokens, postal codes, accounts and reps.

Accounts run to 100k rows: every foreign key to them is a raw id field, and the big changelists skip
the second, unfiltered COUNT(*) that the admin otherwise runs on every page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.gis.admin import GISModelAdmin
from django.template.response import TemplateResponse
from django.utils.translation import ngettext

from tessera_common.widgets import OfflineMapWidget

from .choices import TokenScope
from .models import Account, ApiToken, PostalCode, Rep, User
from .services import api_token_create

# How many leading characters of a key are kept in clear, to recognise it in lists and logs.


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    fieldsets = (*DjangoUserAdmin.fieldsets, ("Tessera", {"fields": ("role",)}))
    add_fieldsets = (*DjangoUserAdmin.add_fieldsets, ("Tessera", {"fields": ("role",)}))
    list_display = ("username", "email", "first_name", "last_name", "role", "is_staff", "is_active")
    list_filter = ("role", *DjangoUserAdmin.list_filter)


class ApiTokenForm(forms.ModelForm):
    # The model's ArrayField would render as comma-separated free text; scopes are a fixed set.
    scopes = forms.TypedMultipleChoiceField(
        choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = ApiToken
        fields = ("name", "user", "scopes", "revoked")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are shown by prefix only: the key exists in clear once, on the page after creation,
    and key_hash is never put on any admin page (fields, list, search or filters)."""

    form = ApiTokenForm
    list_display = ("name", "prefix", "user", "scopes_display", "revoked", "last_used", "created")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    readonly_fields = ("prefix", "last_used", "created", "updated")
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "user", "scopes")
        return ("name", "user", "prefix", "scopes", "revoked", "last_used", "created", "updated")

    @admin.display(description="scopes")
    def scopes_display(self, obj):
        return ", ".join(obj.scopes) or "—"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = api_token_create(user=obj.user, name=obj.name, scopes=obj.scopes)
        obj.pk, obj.prefix, obj.key_hash, obj.created, obj.updated = (
            token.pk,
            token.prefix,
            token.key_hash,
            token.created,
            token.updated,
        )
        obj._state.adding = False
        # Kept on the request only, for response_add to show once; never stored in clear.
        request._tessera_new_token_key = key

    def response_add(self, request, obj, post_url_continue=None):
        key = getattr(request, "_tessera_new_token_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered directly rather than through a redirect and a message, so the key never travels
        # in the messages cookie or the session.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "token": obj,
            "key": key,
            "title": f"Token {obj.name} created",
        }
        return TemplateResponse(request, "admin/accounts/apitoken/key_created.html", context)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked=False).update(revoked=True)
        self.message_user(
            request, ngettext("%d token revoked.", "%d tokens revoked.", count) % count, messages.SUCCESS
        )


@admin.register(PostalCode)
class PostalCodeAdmin(GISModelAdmin):
    gis_widget = OfflineMapWidget
    list_display = ("code", "city", "state", "county_name")
    list_filter = ("state",)
    search_fields = ("code", "city", "county_name")
    show_full_result_count = False


@admin.register(Account)
class AccountAdmin(GISModelAdmin):
    gis_widget = OfflineMapWidget
    list_display = (
        "name",
        "external_id",
        "city",
        "state",
        "postal_code",
        "segment",
        "industry",
        "status",
        "geocode_quality",
        "revenue",
        "potential",
    )
    list_filter = ("status", "segment", "geocode_quality")
    search_fields = ("name", "external_id", "postal_code", "city")
    raw_id_fields = ("parent",)
    readonly_fields = ("created", "updated")
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("external_id", "name", "status", "parent")}),
        (
            "Address and location",
            {
                "fields": (
                    "street",
                    "city",
                    "state",
                    "postal_code",
                    "country",
                    "location",
                    "geocode_quality",
                ),
            },
        ),
        (
            "Size and value",
            {
                "fields": (
                    "industry",
                    "segment",
                    "employees",
                    "revenue",
                    "potential",
                    "workload_hours",
                    "lead_source",
                ),
            },
        ),
        ("Custom CRM fields", {"fields": ("attributes",)}),
        ("Record", {"fields": ("created", "updated")}),
    )


@admin.register(Rep)
class RepAdmin(GISModelAdmin):
    gis_widget = OfflineMapWidget
    list_display = (
        "name",
        "external_id",
        "title",
        "email",
        "manager",
        "capacity_fte",
        "home_postal_code",
        "active",
    )
    list_filter = ("active",)
    search_fields = ("name", "external_id", "email")
    list_select_related = ("manager",)
    autocomplete_fields = ("user", "manager")
    readonly_fields = ("created", "updated")

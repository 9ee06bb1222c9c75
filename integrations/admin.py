"""Admin for webhook subscriptions (an admin sees everyone's), their delivery log and import jobs.

Deliveries and import jobs are records of what happened: read-only here."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from .choices import WebhookEvent
from .models import ImportJob, WebhookDelivery, WebhookSubscription


class WebhookSubscriptionForm(forms.ModelForm):
    # The ArrayField would be comma-separated free text; the events are a fixed set.
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.TypedMultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookSubscription
        fields = ("owner", "name", "url", "events", "active")


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ("url", "name", "owner", "events", "active", "created")
    list_filter = ("active",)
    search_fields = ("url", "name", "owner__username")
    raw_id_fields = ("owner",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created", "event", "subscription", "status", "attempts", "response_code")
    list_filter = ("status", "event")
    list_select_related = ("subscription",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("created", "kind", "file_name", "created_by", "status", "progress", "message")
    list_filter = ("kind", "status")
    list_select_related = ("created_by",)
    exclude = ("data",)
    readonly_fields = [f.name for f in ImportJob._meta.fields if f.name != "data"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

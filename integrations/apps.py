from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """What CRM integrations use beyond the core resources: webhooks, file imports and exports."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "integrations"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the domain event listener)

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from tessera_common.events import domain_event

        from .signals import on_domain_event

        domain_event.connect(on_domain_event, dispatch_uid="analytics.on_domain_event")

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from tessera_common.events import bookings_written, domain_event

        from .signals import on_bookings_written, on_domain_event

        domain_event.connect(on_domain_event, dispatch_uid="analytics.on_domain_event")
        bookings_written.connect(on_bookings_written, dispatch_uid="analytics.on_bookings_written")

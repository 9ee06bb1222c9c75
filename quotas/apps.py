from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "quotas"
    verbose_name = "Quotas and bookings"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the relief listener)

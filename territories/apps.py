from django.apps import AppConfig


class TerritoriesConfig(AppConfig):
    name = "territories"
    verbose_name = "Territories and plans"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the signal handlers)

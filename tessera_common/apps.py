from django.apps import AppConfig


class TesseraCommonConfig(AppConfig):
    name = "tessera_common"
    verbose_name = "Tessera common"

    def ready(self) -> None:
        from . import db  # noqa: F401  (registers the `__any` lookup)

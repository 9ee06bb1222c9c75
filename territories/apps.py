from django.apps import AppConfig


class TerritoriesConfig(AppConfig):
    name = "territories"
    verbose_name = "Territories and plans"

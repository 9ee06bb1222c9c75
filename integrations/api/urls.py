app_name = "integrations-api"

urlpatterns: list = []

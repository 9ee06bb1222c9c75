app_name = "planner-tools-api"

urlpatterns: list = []

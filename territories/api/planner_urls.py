app_name = "planner-api"

urlpatterns: list = []

from django.urls import path

from . import views

urlpatterns = [
    path("planner/<int:plan_id>/", views.planner, name="planner"),
    path("tiles/base/<int:z>/<int:x>/<int:y>.pbf", views.base_tile, name="tiles-base"),
    path(
        "tiles/plans/<int:plan_id>/accounts/<int:z>/<int:x>/<int:y>.pbf",
        views.accounts_tile,
        name="tiles-accounts",
    ),
]

from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import (
    AccountOwnershipView,
    BalanceJobViewSet,
    ChangeFeedView,
    GeoUnitListView,
    PlanAssignmentsView,
    PlanBalanceView,
    PlanViewSet,
    RouteBatchView,
    RouteView,
)

app_name = "territories-api"

router = SimpleRouter()
router.register("jobs", BalanceJobViewSet, basename="job")
router.register("plans", PlanViewSet, basename="plan")

urlpatterns = [
    path("plans/<int:pk>/balance/", PlanBalanceView.as_view(), name="plan-balance"),
    path("plans/<int:pk>/assignments/", PlanAssignmentsView.as_view(), name="plan-assignments"),
    path("geounits/", GeoUnitListView.as_view(), name="geounit-list"),
    path("route/", RouteView.as_view(), name="route"),
    path("route/batch/", RouteBatchView.as_view(), name="route-batch"),
    # accounts/ belongs to the accounts API's router; its patterns are anchored, so this one path
    # about ownership (a question about plans) lives here without clashing.
    path("accounts/<int:pk>/ownership/", AccountOwnershipView.as_view(), name="account-ownership"),
    path("changes/", ChangeFeedView.as_view(), name="change-feed"),
    *router.urls,
]

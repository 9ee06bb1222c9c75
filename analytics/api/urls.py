from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import AttainmentAccountsView, AttainmentView, FairnessView, WarningCheckViewSet, WarningViewSet

app_name = "analytics-api"

router = SimpleRouter()
router.register("warnings/checks", WarningCheckViewSet, basename="warning-check")
router.register("warnings", WarningViewSet, basename="warning")

urlpatterns = [
    path("attainment/", AttainmentView.as_view(), name="attainment"),
    path("attainment/accounts/", AttainmentAccountsView.as_view(), name="attainment-accounts"),
    path("fairness/", FairnessView.as_view(), name="fairness"),
    *router.urls,
]

from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import BalanceJobViewSet, PlanBalanceView

app_name = "territories-api"

router = SimpleRouter()
router.register("jobs", BalanceJobViewSet, basename="job")

urlpatterns = [
    path("plans/<int:pk>/balance/", PlanBalanceView.as_view(), name="plan-balance"),
    *router.urls,
]

from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import ImportJobViewSet, PlanExportView, PlanImportView, WebhookSubscriptionViewSet

app_name = "integrations-api"

router = SimpleRouter()
router.register("webhooks", WebhookSubscriptionViewSet, basename="webhook")
router.register("imports", ImportJobViewSet, basename="import")

urlpatterns = [
    path("plans/<int:pk>/export/", PlanExportView.as_view(), name="plan-export"),
    path("plans/<int:pk>/import/", PlanImportView.as_view(), name="plan-import"),
    *router.urls,
]

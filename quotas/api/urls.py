from rest_framework.routers import SimpleRouter

from .views import BookingViewSet, QuotaAdjustmentViewSet, QuotaPlanViewSet

app_name = "quotas-api"

router = SimpleRouter()
router.register("quota-plans", QuotaPlanViewSet, basename="quota-plan")
router.register("quota-adjustments", QuotaAdjustmentViewSet, basename="quota-adjustment")
router.register("bookings", BookingViewSet, basename="booking")

urlpatterns = router.urls

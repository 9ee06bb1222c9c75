from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import AccountViewSet, RepViewSet, WhoAmIView

app_name = "accounts-api"

router = SimpleRouter()
router.register("accounts", AccountViewSet, basename="account")
router.register("reps", RepViewSet, basename="rep")

urlpatterns = [path("me/", WhoAmIView.as_view(), name="me"), *router.urls]

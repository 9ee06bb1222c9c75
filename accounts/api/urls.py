from django.urls import path

from .views import WhoAmIView

app_name = "accounts-api"

urlpatterns = [path("me/", WhoAmIView.as_view(), name="me")]

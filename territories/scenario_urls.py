from django.urls import path

from . import scenario_views

urlpatterns = [
    path("", scenario_views.home, name="home"),
]

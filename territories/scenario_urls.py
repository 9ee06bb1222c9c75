"""Browser pages for plans, comparing and reviewing them, and the account and rep directories."""

from django.urls import path

from . import account_views, scenario_views

urlpatterns = [
    path("", scenario_views.home, name="home"),
    path("plans/new/", scenario_views.plan_new, name="plan-new"),
    path("plans/compare/", scenario_views.plan_compare, name="plan-compare"),
    path("plans/map/states.geojson", scenario_views.map_states, name="map-states"),
    path("plans/<int:pk>/", scenario_views.plan_detail, name="plan-detail"),
    path("plans/<int:pk>/clone/", scenario_views.plan_clone, name="plan-clone"),
    path("plans/<int:pk>/archive/", scenario_views.plan_archive, name="plan-archive"),
    path("plans/<int:pk>/review/", scenario_views.plan_review, name="plan-review"),
    path("plans/<int:pk>/outlines.geojson", scenario_views.plan_outlines, name="plan-outlines"),
    path("accounts/", account_views.account_list, name="account-list"),
    path("accounts/<int:pk>/", account_views.account_detail, name="account-detail"),
    path("reps/", account_views.rep_list, name="rep-list"),
    path("reps/<int:pk>/", account_views.rep_detail, name="rep-detail"),
]

from django.urls import path

from . import views

app_name = "quotas"

urlpatterns = [
    path("quotas/", views.quota_plan_list, name="list"),
    path("quotas/new/", views.quota_plan_create, name="create"),
    path("quotas/fiscal-years/", views.fiscal_year_create, name="fiscal-year-create"),
    path("quotas/<int:pk>/", views.quota_plan_detail, name="detail"),
    path("quotas/<int:pk>/allocate/", views.quota_plan_allocate, name="allocate"),
    path("quotas/<int:pk>/status/", views.quota_plan_transition, name="transition"),
    path("quotas/<int:pk>/adjustments/", views.adjustment_create, name="adjustment-create"),
    path(
        "quotas/<int:pk>/adjustments/<int:adjustment_id>/", views.adjustment_decide, name="adjustment-decide"
    ),
    path("quotas/<int:pk>/goals/", views.goal_set, name="goal-set"),
]

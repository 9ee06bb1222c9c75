from django.urls import path

from . import planner_views as views

app_name = "planner-api"

urlpatterns = [
    path("plans/<int:pk>/accounts/<int:account_id>/why/", views.AccountWhyView.as_view(), name="account-why"),
    path("plans/<int:pk>/history/", views.PlanHistoryView.as_view(), name="plan-history"),
    path("plans/<int:pk>/undo/", views.PlanUndoView.as_view(), name="plan-undo"),
    path("plans/<int:pk>/redo/", views.PlanRedoView.as_view(), name="plan-redo"),
    path("plans/<int:pk>/locks/", views.PlanLocksView.as_view(), name="plan-locks"),
    path("plans/<int:pk>/selection/", views.PlanSelectionView.as_view(), name="plan-selection"),
    path("plans/<int:pk>/map/", views.PlanMapView.as_view(), name="plan-map"),
]

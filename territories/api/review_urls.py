from django.urls import path

from .review_views import PlanCommentsView

app_name = "review-api"

urlpatterns = [
    path("plans/<int:pk>/comments/", PlanCommentsView.as_view(), name="plan-comments"),
]

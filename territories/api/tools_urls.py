from django.urls import path

from .tools_views import (
    PlanRuleListView,
    PlanRulePreviewView,
    RepCandidateListView,
    RuleDetailView,
    TerritoryDetailView,
    TerritoryListView,
    TerritoryMembersView,
    TerritoryMergeView,
    TerritorySplitView,
)

app_name = "planner-tools-api"

urlpatterns = [
    path("territories/", TerritoryListView.as_view(), name="territory-list"),
    path("territories/rep-candidates/", RepCandidateListView.as_view(), name="rep-candidates"),
    path("territories/<int:pk>/", TerritoryDetailView.as_view(), name="territory-detail"),
    path("territories/<int:pk>/merge/", TerritoryMergeView.as_view(), name="territory-merge"),
    path("territories/<int:pk>/split/", TerritorySplitView.as_view(), name="territory-split"),
    path("territories/<int:pk>/members/", TerritoryMembersView.as_view(), name="territory-members"),
    path("plans/<int:pk>/rules/", PlanRuleListView.as_view(), name="plan-rules"),
    path("plans/<int:pk>/rules/preview/", PlanRulePreviewView.as_view(), name="plan-rules-preview"),
    path("rules/<int:pk>/", RuleDetailView.as_view(), name="rule-detail"),
]

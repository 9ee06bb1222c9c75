from django.urls import path

from . import views

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/export/", views.dashboard_export, name="dashboard-export"),
    path("dashboard/accounts/", views.dashboard_accounts, name="dashboard-accounts"),
    path("dashboard/accounts/export/", views.dashboard_accounts_export, name="dashboard-accounts-export"),
    path("warnings/", views.warnings_page, name="warnings"),
]

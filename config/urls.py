from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

# API modules are listed one per area so each can grow without touching the others; their paths
# never overlap (see docs/architecture.md).
api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("territories.api.urls")),
    path("", include("territories.api.planner_urls")),
    path("", include("territories.api.tools_urls")),
    path("", include("territories.api.review_urls")),
    path("", include("quotas.api.urls")),
    path("", include("analytics.api.urls")),
    path("", include("integrations.api.urls")),
]

FAVICON_URL = "/" + settings.STATIC_URL.strip("/") + "/favicon.svg"

urlpatterns = [
    # Browsers and tools ask for /favicon.ico on their own; pages name the SVG (templates/base.html).
    path("favicon.ico", RedirectView.as_view(url=FAVICON_URL, permanent=True)),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/", include(api_v1)),
    path("", include("integrations.urls")),
    path("", include("accounts.token_urls")),
    path("", include("accounts.urls")),
    path("", include("quotas.urls")),
    path("", include("analytics.urls")),
    path("", include("territories.urls")),
    path("", include("territories.scenario_urls")),
]

# Under /api/ a path no route matches still answers in the API's JSON error shape.
handler404 = "integrations.views.not_found"

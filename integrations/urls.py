from django.urls import path
from drf_spectacular.views import SpectacularSwaggerView

from . import views

urlpatterns = [
    # Swagger UI from the vendored assets (SPECTACULAR_SETTINGS["SWAGGER_UI_DIST"]): works offline.
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("imports/", views.imports_page, name="imports"),
]

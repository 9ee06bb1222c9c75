from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.defaults import page_not_found

from territories.selectors import plan_list

from .choices import ImportKind
from .geo import EXPORT_FORMATS
from .selectors import import_job_list

EXPORT_LABELS = {
    "geojson": "GeoJSON",
    "shapefile": "Shapefile (zip)",
    "gpkg": "GeoPackage",
    "units-csv": "Unit → territory CSV",
}


@login_required
def imports_page(request):
    """Upload accounts or reps files with live progress and a per-row report; download exports."""
    if not request.user.can_plan:
        return render(request, "integrations/forbidden.html", status=403)
    recent = import_job_list(user=request.user).filter(kind__in=[ImportKind.ACCOUNTS, ImportKind.REPS])[:10]
    return render(
        request,
        "integrations/imports.html",
        {
            "plans": plan_list(user=request.user).order_by("-created", "-id")[:200],
            "formats": [(f, EXPORT_LABELS[f]) for f in EXPORT_FORMATS],
            "recent": recent,
        },
    )


def not_found(request, exception=None):
    """The site's 404 (config/urls.py handler404): under /api/ the API's error shape, so a client
    (and the OpenAPI contract) gets JSON even for a path no route matches, e.g. a malformed id."""
    if request.path.startswith("/api/"):
        message = "Not found."
        if not request.path.endswith("/"):
            message += " API paths end with a slash."
        return JsonResponse({"message": message, "errors": {}}, status=404)
    return page_not_found(request, exception)

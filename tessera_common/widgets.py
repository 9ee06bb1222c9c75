"""Geometry widgets that work with no internet.

Django's OpenLayersWidget/OSMWidget load OpenLayers from a CDN and draw OpenStreetMap tiles. These
subclasses load the OpenLayers build vendored in static/vendor/ol/ and draw the project's own state
outlines (a GeoJSON view in the GeoUnit admin) underneath the geometry being edited. An external
raster basemap is added only when settings.TESSERA_BASEMAP_URL is set.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.gis.forms.widgets import OSMWidget
from django.forms.renderers import TemplatesSetting
from django.urls import NoReverseMatch, reverse

# The URL name GeoUnitAdmin registers for the state outlines; resolved by name so that this module
# (imported by accounts, which must not import territories) stays free of app imports.
BASE_STATES_URL_NAME = "admin:territories_geounit_base_states"
_PROJECT_TEMPLATES = TemplatesSetting()


class OfflineMapWidget(OSMWidget):
    """An editable OpenLayers map for points and polygons, drawn over Tessera's own state outlines."""

    template_name = "gis/tessera-openlayers.html"
    # The contiguous United States, for an empty field; a stored geometry is fitted instead.
    default_lon = -98.5
    default_lat = 39.5
    default_zoom = 4
    # The stock widget fits a lone point at 1 m per pixel, which shows no surroundings at all; at
    # zoom 8 (~600 m per pixel) the map spans a few hundred km, enough to see the state outlines.
    point_zoom = 8

    class Media:
        extend = False
        css = {"all": ("vendor/ol/ol.css", "gis/css/ol3.css")}
        js = ("vendor/ol/ol.js", "gis/js/OLMapWidget.js", "js/admin_map.js")

    def render(self, name, value, attrs=None, renderer=None):
        # Django's default form renderer only searches app template folders; the widget's template
        # lives in the project's templates/ (settings.TEMPLATES), which TemplatesSetting searches.
        return super().render(name, value, attrs, renderer=_PROJECT_TEMPLATES)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["tessera_map"] = {
            "states_url": base_states_url(),
            "basemap_url": settings.TESSERA_BASEMAP_URL,
            "basemap_attribution": getattr(settings, "TESSERA_BASEMAP_ATTRIBUTION", ""),
            "point_zoom": self.point_zoom,
        }
        context["tessera_map_config_id"] = f"{context.get('id') or name}_tessera_map"
        return context


def base_states_url() -> str:
    """The state-outline GeoJSON's URL, or "" when the GeoUnit admin is not installed."""
    try:
        return reverse(BASE_STATES_URL_NAME)
    except NoReverseMatch:
        return ""

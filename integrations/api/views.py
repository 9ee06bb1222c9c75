from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ApiAccess
from integrations import geo, selectors, services
from integrations.choices import ImportKind
from integrations.imports import import_job_create
from territories.choices import PlanStatus
from territories.selectors import plan_list
from tessera_common.errors import ApplicationError

from .permissions import CanPlan, SeesEverything
from .serializers import (
    EXPORT_FORMAT_CHOICES,
    ImportJobSerializer,
    ImportUploadSerializer,
    PlanImportSerializer,
    WebhookDeliverySerializer,
    WebhookSubscriptionCreatedSerializer,
    WebhookSubscriptionSerializer,
)


class WebhookSubscriptionViewSet(viewsets.ModelViewSet):
    """Your webhook subscriptions. Each delivery is a POST of a JSON body signed with the
    subscription's secret: `X-Tessera-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, plus
    `X-Tessera-Event` and `X-Tessera-Delivery` (an id that stays the same across retries)."""

    serializer_class = WebhookSubscriptionSerializer
    permission_classes = [ApiAccess, SeesEverything]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.webhook_subscription_list(user=self.request.user)

    @extend_schema(responses={201: WebhookSubscriptionCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = services.webhook_subscription_create(owner=request.user, **serializer.validated_data)
        return Response(
            WebhookSubscriptionCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("secret", None) == "":
            raise ApplicationError(
                "To have a new secret generated, use rotate-secret; PATCH sets a secret you give.",
                {"secret": ["This field may not be blank."]},
            )
        subscription = services.webhook_subscription_update(
            subscription=serializer.instance, actor=request.user, **serializer.validated_data
        )
        return Response(self.get_serializer(subscription).data)

    def destroy(self, request, *args, **kwargs):
        services.webhook_subscription_delete(subscription=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=WebhookSubscriptionCreatedSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Replace the signing secret with a new generated one, returned this once. Deliveries
        already queued are signed with the new secret when they are sent."""
        subscription = services.webhook_subscription_update(
            subscription=self.get_object(), actor=request.user, secret=None
        )
        return Response(WebhookSubscriptionCreatedSerializer(subscription).data)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The delivery log of this subscription, newest first: status, attempts and each attempt's
        answer."""
        deliveries = selectors.webhook_delivery_list(subscription=self.get_object())
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses=WebhookDeliverySerializer)
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>\d+)/redeliver")
    def redeliver(self, request, pk=None, delivery_id=None):
        """Send a delivery again (the same body, a fresh series of attempts)."""
        delivery = get_object_or_404(
            selectors.webhook_delivery_list(subscription=self.get_object()), pk=delivery_id
        )
        delivery = services.webhook_delivery_redeliver(delivery=delivery, actor=request.user)
        return Response(WebhookDeliverySerializer(delivery).data)


class ImportJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """File imports: POST an accounts or reps file (CSV or XLSX) and poll the job for progress and
    the per-row report."""

    serializer_class = ImportJobSerializer
    permission_classes = [ApiAccess, CanPlan]
    parser_classes = [MultiPartParser, FormParser]
    filterset_fields = ["kind", "status"]

    def get_queryset(self):
        return selectors.import_job_list(user=self.request.user)

    @extend_schema(request=ImportUploadSerializer, responses={202: ImportJobSerializer})
    def create(self, request):
        upload = ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        options = {k: data[k] for k in ("dry_run", "partial", "mapping", "sheet", "delimiter") if data.get(k)}
        job = import_job_create(
            kind=data["kind"],
            data=data["file"].read(),
            file_name=data["file"].name,
            actor=request.user,
            options=options,
        )
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class _IgnoreFormatParameter(DefaultContentNegotiation):
    """`?format=` names the export's file format here, not DRF's renderer; answers are JSON or a file."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _plan(request, pk: int):
    return get_object_or_404(plan_list(user=request.user), pk=pk)


class PlanExportView(APIView):
    """A plan's territories as a GIS file (the ones you may see), or the unit→territory CSV."""

    content_negotiation_class = _IgnoreFormatParameter

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format", str, enum=EXPORT_FORMAT_CHOICES, default="geojson", description="The file format."
            )
        ],
        responses={
            (200, "application/geo+json"): OpenApiResponse(OpenApiTypes.OBJECT, description="GeoJSON"),
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="Zipped Shapefile"),
            (200, "application/geopackage+sqlite3"): OpenApiResponse(
                OpenApiTypes.BINARY, description="GeoPackage"
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="unit_code,level,territory_code"
            ),
        },
    )
    def get(self, request, pk: int):
        plan = _plan(request, pk)
        export = geo.plan_territories_export(
            plan=plan, user=request.user, export_format=request.query_params.get("format", "geojson")
        )
        response = HttpResponse(export.content, content_type=export.media_type)
        response["Content-Disposition"] = f'attachment; filename="{export.file_name}"'
        return response


class PlanImportView(APIView):
    """Import territories into a draft plan from polygons (GeoJSON, zipped Shapefile, GeoPackage):
    each leaf polygon takes the units whose representative point lies inside it; or from a
    unit→territory CSV (unit_code, level, territory_code). All or nothing; answers with the job."""

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [ApiAccess, CanPlan]

    @extend_schema(request=PlanImportSerializer, responses={202: ImportJobSerializer})
    def post(self, request, pk: int):
        plan = _plan(request, pk)
        upload = PlanImportSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        version = data.get("version") or _if_match(request)
        if plan.status != PlanStatus.DRAFT:
            raise ApplicationError(
                f"Territories can be imported into a draft plan only; '{plan.name}' is "
                f"{plan.get_status_display().lower()}.",
                {"plan": ["must be a draft"]},
            )
        options = {"materialize": data["materialize"]}
        if version is not None:
            options["version"] = version
        if data.get("unit_level"):
            options["unit_level"] = data["unit_level"]
        job = import_job_create(
            kind=ImportKind.TERRITORIES,
            data=data["file"].read(),
            file_name=data["file"].name,
            actor=request.user,
            options=options,
            plan=plan,
        )
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


def _if_match(request) -> int | None:
    header = request.headers.get("If-Match", "").strip().strip('"').removeprefix("W/").strip('"')
    if not header:
        return None
    if not header.isdigit():
        raise ApplicationError("If-Match must be the plan version number.", {"version": ["not a number"]})
    return int(header)

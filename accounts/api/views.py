"""REST endpoints for accounts and reps: CRUD, filters, and bulk upsert by external id.

Thin by design: lists come from accounts.selectors (already scoped to the user), every write goes
through the bulk upsert services (one object is a batch of one), and roles and token scopes are
checked by accounts.permissions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from django.db import IntegrityError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from accounts.imports import ACCOUNT_COLUMNS, REP_COLUMNS, ColumnSpec, map_table, read_csv_bytes
from accounts.models import Account, ApiToken, Rep
from accounts.permissions import ANY_SCOPE, CanEditAccounts
from accounts.services import (
    ACCOUNT_FIELDS,
    ERROR,
    LOCATION_TOLERANCE,
    REP_FIELDS,
    BulkResult,
    account_bulk_upsert,
    account_delete,
    rep_bulk_upsert,
    rep_delete,
)
from tessera_common.errors import ApplicationError

from .filtersets import AccountFilterSet, RepFilterSet
from .serializers import (
    AccountBulkRequestSerializer,
    AccountInputSerializer,
    AccountSerializer,
    BulkErrorSerializer,
    BulkResultSerializer,
    RepBulkRequestSerializer,
    RepInputSerializer,
    RepSerializer,
    WhoAmISerializer,
)

MAX_BULK_ROWS = 10_000
# A generous ceiling on the body of one bulk request (10,000 wide rows are about 5 MB of JSON), so
# that a runaway client cannot make the server parse gigabytes before the row count is checked.
MAX_BULK_BYTES = 50 * 1024 * 1024


class WhoAmIView(APIView):
    """Who the request is authenticated as: lets an integration check its token and scopes."""

    required_scope = ANY_SCOPE

    @extend_schema(responses=WhoAmISerializer)
    def get(self, request):
        token = request.auth if isinstance(request.auth, ApiToken) else None
        rep = getattr(request.user, "rep", None)
        data = {
            "username": request.user.get_username(),
            "role": request.user.role,
            "rep_external_id": rep.external_id if rep else None,
            "token_scopes": token.scopes if token else None,
        }
        return Response(WhoAmISerializer(data).data)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class BulkJSONParser(BaseParser):
    """application/json for the bulk endpoints.

    DRF's JSONParser reads the body through Django's `request.body`, which refuses anything above
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with a bare HTML 400; 10,000 rows are more than that.
    This parser reads the stream itself, under the bulk endpoints' own size limit (MAX_BULK_BYTES)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return None
        try:
            return json.loads(stream.read(), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class CSVParser(BaseParser):
    """text/csv bodies reach the view as bytes; accounts.imports reads them as it reads files."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read() if stream is not None else b""


# --- shared machinery ------------------------------------------------------------------------------


class _Kind:
    """What differs between the account and the rep endpoints."""

    def __init__(
        self, *, noun: str, fields: tuple[str, ...], columns: ColumnSpec, upsert: Callable[..., BulkResult],
        lat: str, lon: str, point: str, location_attr: str, postal: str, has_attributes: bool,
    ):  # fmt: skip
        self.noun, self.fields, self.columns, self.upsert = noun, fields, columns, upsert
        self.lat, self.lon, self.point, self.location_attr = lat, lon, point, location_attr
        self.postal = postal
        self.has_attributes = has_attributes


ACCOUNT = _Kind(
    noun="account", fields=ACCOUNT_FIELDS, columns=ACCOUNT_COLUMNS, upsert=account_bulk_upsert,
    lat="latitude", lon="longitude", point="location", location_attr="location", postal="postal_code",
    has_attributes=True,
)  # fmt: skip
REP = _Kind(
    noun="rep", fields=REP_FIELDS, columns=REP_COLUMNS, upsert=rep_bulk_upsert,
    lat="home_latitude", lon="home_longitude", point="home_location", location_attr="home_location",
    postal="home_postal_code", has_attributes=False,
)  # fmt: skip

# Fields of the representation a client may send back unchanged (GET, edit, PUT): ignored on input.
_READ_ONLY = {"id", "created", "updated", "geocode_quality", "username"}


def _flag(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ApplicationError(f"{name} must be true or false (got '{raw}').", {name: ["Use true or false."]})


def _point_input(kind: _Kind, row: dict[str, Any]) -> None:
    """A GeoJSON point in `location` becomes latitude/longitude, unless those are given too."""
    if kind.point not in row:
        return
    value = row.pop(kind.point)
    if kind.lat in row or kind.lon in row:
        return
    if value is None:
        row[kind.lat] = row[kind.lon] = None
        return
    coordinates = value.get("coordinates") if isinstance(value, Mapping) else None
    if (
        not isinstance(value, Mapping)
        or value.get("type") != "Point"
        or not isinstance(coordinates, list)
        or len(coordinates) != 2
    ):
        raise ApplicationError(
            f'{kind.point} must be a GeoJSON Point: {{"type": "Point", "coordinates": [lon, lat]}}.',
            {kind.point: ["Give a GeoJSON Point with coordinates [longitude, latitude]."]},
        )
    row[kind.lon], row[kind.lat] = coordinates


def _same_point(instance, kind: _Kind, row: dict[str, Any]) -> bool:
    point = getattr(instance, kind.location_attr)
    lat, lon = row.get(kind.lat), row.get(kind.lon)
    if point is None or not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return False
    return abs(point.x - lon) <= LOCATION_TOLERANCE and abs(point.y - lat) <= LOCATION_TOLERANCE


def _write_one(request: Request, kind: _Kind, *, instance=None, replace: bool = False):
    """Create or update one object through the bulk service; returns its row result."""
    data = request.data
    if not isinstance(data, Mapping):
        raise ApplicationError(
            f"Send one {kind.noun} as a JSON object.", {"non_field_errors": ["Expected an object."]}
        )
    row = {key: value for key, value in data.items() if key not in _READ_ONLY}
    _point_input(kind, row)
    if instance is not None:
        if "external_id" in row and row["external_id"] != instance.external_id:
            raise ApplicationError(
                f"The external id identifies the {kind.noun} in the CRM and cannot be changed here.",
                {"external_id": [f"Stays '{instance.external_id}'."]},
            )
        row["external_id"] = instance.external_id
        if _same_point(instance, kind, row) and (not replace or kind.postal in data):
            # A client sending back the coordinates it read (e.g. a ZIP centroid) is not telling us
            # exact coordinates: keep the stored location and its quality. (A PUT without a postal
            # code clears it, so there the coordinates it sends are all the location there is.)
            row.pop(kind.lat)
            row.pop(kind.lon)
        if replace:
            # PUT replaces: a field left out is cleared, custom fields left out are removed.
            for key in kind.fields:
                if key not in row and key not in (kind.lat, kind.lon, "attributes"):
                    row[key] = None
            if kind.lat not in row and kind.lon not in row and kind.postal not in data:
                row[kind.lat] = row[kind.lon] = None
            if kind.has_attributes:
                given = row.get("attributes") if isinstance(row.get("attributes"), Mapping) else {}
                removed = {key: None for key in instance.attributes if key not in given}
                if "attributes" not in row or isinstance(row["attributes"], Mapping):
                    row["attributes"] = {**removed, **given}
    try:
        result = kind.upsert(rows=[row], atomic=True, actor=request.user)
    except IntegrityError:
        raise ApplicationError(
            f"Another request wrote this {kind.noun} at the same time; nothing was written. Try again.",
            {"external_id": ["Concurrent write; retry."]},
            status=409,
        ) from None
    outcome = result.rows[0]
    if outcome.status == ERROR:
        raise ApplicationError(f"The {kind.noun} has invalid fields.", outcome.errors)
    return outcome


def _bulk_rows(request: Request, kind: _Kind) -> tuple[list, list[int] | None, dict, list[str]]:
    """The rows of a bulk body: (rows, row numbers, errors found while reading, notes)."""
    length = request.META.get("CONTENT_LENGTH") or 0
    try:
        too_big = int(length) > MAX_BULK_BYTES
    except ValueError:
        too_big = False
    if too_big:
        raise ApplicationError(
            f"The body is larger than {MAX_BULK_BYTES // (1024 * 1024)} MB; send at most "
            f"{MAX_BULK_ROWS:,} rows per request.",
            {"rows": [f"At most {MAX_BULK_ROWS:,} rows per request."]},
            status=413,
        )
    data = request.data
    if isinstance(data, bytes):
        table = read_csv_bytes(data)
        _check_count(len(table.records))
        mapped = map_table(table, kind.columns)
        return mapped.rows, mapped.row_numbers, mapped.input_errors, mapped.notes
    if isinstance(data, Mapping):
        if "rows" not in data:
            raise ApplicationError(
                'Send a JSON list of rows, or an object {"rows": [...]}.',
                {"rows": ["This field is required."]},
            )
        data = data["rows"]
    if not isinstance(data, list):
        raise ApplicationError("rows must be a JSON list of objects.", {"rows": ["Expected a list."]})
    _check_count(len(data))
    return data, None, {}, []


def _check_count(count: int) -> None:
    if count > MAX_BULK_ROWS:
        raise ApplicationError(
            f"At most {MAX_BULK_ROWS:,} rows per request (this one has {count:,}); split the batch.",
            {"rows": [f"At most {MAX_BULK_ROWS:,} rows per request."]},
        )
    if count == 0:
        raise ApplicationError("The batch has no rows.", {"rows": ["Send at least one row."]})


def _bulk(request: Request, kind: _Kind) -> Response:
    atomic = _flag(request, "atomic")
    dry_run = _flag(request, "dry_run")
    rows, numbers, input_errors, notes = _bulk_rows(request, kind)
    try:
        result = kind.upsert(
            rows=rows, atomic=atomic, actor=request.user, row_numbers=numbers, input_errors=input_errors,
            dry_run=dry_run,
        )  # fmt: skip
    except IntegrityError:
        # Another request created some of the same external ids between our read and our write
        # (new rows cannot be locked in advance). Nothing of this batch was written.
        raise ApplicationError(
            f"Another request created some of these {kind.noun}s at the same time; nothing was written. "
            "Send the batch again: rows that exist now will be updated or unchanged.",
            {"rows": ["Concurrent write; retry."]},
            status=409,
        ) from None
    body: dict[str, Any] = {
        "committed": result.committed,
        "totals": result.totals,
        "rows": [r.as_dict() for r in result.rows],
        "notes": notes,
    }
    failed = [r for r in result.rows if r.status == ERROR]
    if atomic and failed:
        errors = {
            f"row {r.row}": [
                f"{field}: {message}" for field, messages in r.errors.items() for message in messages
            ]
            for r in failed
        }
        message = (
            f"{len(failed):,} of {len(result.rows):,} rows have errors; with atomic=true nothing was written."
        )
        return Response({"message": message, "errors": errors, **body}, status=status.HTTP_400_BAD_REQUEST)
    return Response(body)


_BULK_PARAMETERS = [
    OpenApiParameter(
        "atomic",
        OpenApiTypes.BOOL,
        description="Write nothing if any row fails (400 with the per-row errors).",
    ),
    OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="Validate and report, write nothing."),
]


def _bulk_schema(noun: str, request_serializer):
    return extend_schema(
        summary=f"Create or update up to {MAX_BULK_ROWS:,} {noun}s by external_id",
        description=(
            f'Body: a JSON list of {noun}s, an object {{"rows": [...]}}, or a CSV file (text/csv, header row '
            "with field names or common CRM column names). Each row comes back as created, updated, "
            "unchanged or error (with messages per field); sending the same body twice gives all unchanged."
        ),
        parameters=_BULK_PARAMETERS,
        request={
            "application/json": request_serializer,
            "text/csv": OpenApiTypes.STR,
        },
        responses={
            200: BulkResultSerializer,
            400: OpenApiResponse(
                BulkErrorSerializer, description="Bad body, too many rows, or atomic with errors."
            ),
        },
        examples=[
            OpenApiExample(
                "JSON list",
                value=[{"external_id": "A-1", "name": "Acme", "postal_code": "94103"}],
                request_only=True,
            )
        ],
    )


class _BaseViewSet(viewsets.ModelViewSet):
    permission_classes = [CanEditAccounts]
    kind: _Kind
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_plan(self):
        params = self.request.query_params
        plan_id = params.get("plan")
        if not plan_id and params.get("territory"):
            # A territory belongs to one plan: filtering by it without a plan means its own plan.
            plan_id = selectors.plan_of_territory(territory_id=params["territory"])
        return selectors.scope_plan(user=self.request.user, plan_id=plan_id)

    def create(self, request, *args, **kwargs):
        data = request.data
        ext = data.get("external_id") if isinstance(data, Mapping) else None
        if isinstance(ext, str) and self.kind_model.objects.filter(external_id=ext.strip()).exists():
            raise ApplicationError(
                f"A {self.kind.noun} with external id '{ext.strip()}' exists; update it with PATCH, or "
                f"upsert with {self.kind.noun}s/bulk/.",
                {"external_id": ["Already exists."]},
                status=409,
            )
        outcome = _write_one(request, self.kind)
        return self._respond_with_instance(outcome.id, created=True)

    def update(self, request, *args, **kwargs):
        instance = self.get_object()
        outcome = _write_one(request, self.kind, instance=instance, replace=not kwargs.get("partial", False))
        return self._respond_with_instance(outcome.id, created=False)

    def _respond_with_instance(self, pk: int, *, created: bool) -> Response:
        # Read back without the plan scope: a planner who just created an account must see it even
        # though no territory owns it yet (writers see every account anyway).
        instance = self.kind_model.objects.get(pk=pk)
        return Response(
            self.get_serializer(instance).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema_view(
    list=extend_schema(
        summary="Accounts you may see",
        description=(
            "Scoped by plan: a manager sees the accounts of their subtree, a rep those of their own "
            "territories."
        ),
    ),
    create=extend_schema(request=AccountInputSerializer, responses={201: AccountSerializer}),
    update=extend_schema(request=AccountInputSerializer, responses=AccountSerializer),
    partial_update=extend_schema(request=AccountInputSerializer, responses=AccountSerializer),
)
class AccountViewSet(_BaseViewSet):
    """Accounts (CRM companies). Planners, admins and integrations with the write scope edit them."""

    serializer_class = AccountSerializer
    filterset_class = AccountFilterSet
    kind = ACCOUNT
    kind_model = Account

    def get_queryset(self) -> QuerySet[Account]:
        if getattr(self, "swagger_fake_view", False):
            return Account.objects.none()
        return selectors.account_list(user=self.request.user, plan=self.get_plan()).order_by("name", "id")

    def perform_destroy(self, instance):
        account_delete(account=instance, actor=self.request.user)

    @_bulk_schema("account", AccountBulkRequestSerializer)
    @action(
        detail=False,
        methods=["post"],
        url_path="bulk",
        parser_classes=[BulkJSONParser, CSVParser],
        filterset_class=None,
    )
    def bulk(self, request):
        return _bulk(request, ACCOUNT)


@extend_schema_view(
    list=extend_schema(summary="Reps you may see"),
    create=extend_schema(request=RepInputSerializer, responses={201: RepSerializer}),
    update=extend_schema(request=RepInputSerializer, responses=RepSerializer),
    partial_update=extend_schema(request=RepInputSerializer, responses=RepSerializer),
)
class RepViewSet(_BaseViewSet):
    """Reps (sellers). The same rules as accounts."""

    serializer_class = RepSerializer
    filterset_class = RepFilterSet
    kind = REP
    kind_model = Rep

    def get_queryset(self) -> QuerySet[Rep]:
        if getattr(self, "swagger_fake_view", False):
            return Rep.objects.none()
        return selectors.rep_list(user=self.request.user, plan=self.get_plan()).order_by("name", "id")

    def perform_destroy(self, instance):
        rep_delete(rep=instance, actor=self.request.user)

    @_bulk_schema("rep", RepBulkRequestSerializer)
    @action(
        detail=False,
        methods=["post"],
        url_path="bulk",
        parser_classes=[BulkJSONParser, CSVParser],
        filterset_class=None,
    )
    def bulk(self, request):
        return _bulk(request, REP)

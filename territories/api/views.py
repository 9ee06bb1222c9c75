from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from territories.balancing import balance_job_cancel, balance_job_create, balance_job_list
from territories.selectors import plan_list

from .serializers import BalanceJobSerializer, BalanceParametersSerializer


def _require_write_scope(request) -> None:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    if token is not None and "write" not in token.scopes:
        raise PermissionDenied("This API token lacks the 'write' scope.")


class PlanBalanceView(APIView):
    """Start a balance job on a plan. The answer is the queued job; poll /api/v1/jobs/{id}/."""

    @extend_schema(request=BalanceParametersSerializer, responses={202: BalanceJobSerializer})
    def post(self, request, pk: int):
        if not getattr(request.user, "can_plan", False):
            raise PermissionDenied("Only planners and admins can balance a plan.")
        _require_write_scope(request)
        plan = get_object_or_404(plan_list(user=request.user), pk=pk)
        parameters = BalanceParametersSerializer(data=request.data)
        parameters.is_valid(raise_exception=True)
        # Only what the client sent: the service fills in defaults that depend on the mode.
        sent = {k: v for k, v in parameters.validated_data.items() if k in request.data}
        job = balance_job_create(plan=plan, parameters=sent, actor=request.user)
        return Response(BalanceJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BalanceJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Balance jobs: status, progress 0–100, result figures and the scenario produced."""

    serializer_class = BalanceJobSerializer

    def get_queryset(self):
        return balance_job_list(user=self.request.user).order_by("-created", "-id")

    @extend_schema(request=None, responses=BalanceJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued job, or ask a running one to stop."""
        _require_write_scope(request)
        job = balance_job_cancel(job=self.get_object(), actor=request.user)
        return Response(BalanceJobSerializer(job).data)

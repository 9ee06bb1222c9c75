from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from territories.review import plan_comment_create, plan_comment_list
from territories.selectors import plan_list, territory_list
from tessera_common.errors import ApplicationError

from .review_serializers import PlanCommentCreateSerializer, PlanCommentSerializer


class PlanCommentsView(APIView):
    """Review comments on a plan. Anyone who may see the plan reads the comments on the parts they
    see; managers, reps and planners add comments while the plan is in review (otherwise 403, with
    the reason). A plan outside your scope is a 404. Token scopes (read for GET, write for POST)
    are checked by the project's default permission, accounts.permissions.ApiAccess."""

    @extend_schema(responses=PlanCommentSerializer(many=True))
    def get(self, request, pk: int):
        plan = get_object_or_404(plan_list(user=request.user), pk=pk)
        # A plain list, oldest first, as in contracts.md: a review gathers tens of comments, not pages.
        comments = plan_comment_list(user=request.user, plan=plan).order_by("created", "id")
        return Response(PlanCommentSerializer(comments, many=True).data)

    @extend_schema(request=PlanCommentCreateSerializer, responses={201: PlanCommentSerializer})
    def post(self, request, pk: int):
        plan = get_object_or_404(plan_list(user=request.user), pk=pk)
        data = PlanCommentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        territory = None
        territory_id = data.validated_data.get("territory")
        if territory_id is not None:
            territory = territory_list(user=request.user, plan=plan).filter(pk=territory_id).first()
            if territory is None:
                raise ApplicationError(
                    f"Territory {territory_id} is not one of this plan's territories you can see.",
                    {"territory": ["not in this plan or not in your part of it"]},
                )
        comment = plan_comment_create(
            plan=plan, author=request.user, body=data.validated_data["body"], territory=territory
        )
        return Response(PlanCommentSerializer(comment).data, status=status.HTTP_201_CREATED)

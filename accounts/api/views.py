from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken

from .serializers import WhoAmISerializer


class WhoAmIView(APIView):
    """Who the request is authenticated as: lets an integration check its token and scopes."""

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

"""One error shape for the whole API: {"message": str, "errors": {field_or_row: [messages]}}."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from .errors import ApplicationError


def _as_lists(detail) -> dict:
    if isinstance(detail, dict):
        return {str(k): v if isinstance(v, list) else [v] for k, v in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {}


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "errors": exc.errors}, status=exc.status)
    if isinstance(exc, DataError):
        # PostgreSQL refused a value that validation let through (a NUL character in a search, a
        # number beyond a column's range): the client's input, so a 400 that says so, not a 500.
        set_rollback()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Response(
            {"message": f"A value in the request cannot be stored or searched: {reason}", "errors": {}},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message = "The request has invalid fields."
        errors = _as_lists(response.data)
    else:
        message = str(exc.detail) if hasattr(exc, "detail") else "Request failed."
        errors = {}
    response.data = {"message": message, "errors": errors}
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS and getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    return response

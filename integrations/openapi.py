"""drf-spectacular hook: document the API's one error shape on every operation."""

from __future__ import annotations

_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every API error: what went wrong, and the fields or rows it concerns.",
    "properties": {
        "message": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {}},
            "description": "Field or row name → messages.",
        },
    },
    "required": ["message", "errors"],
}


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method in _METHODS:
                operation.setdefault("responses", {}).setdefault(
                    "default",
                    {
                        "description": "An error (400 invalid input, 401, 403, 404, 409 stale plan version).",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
    return result

# Token scopes (read for safe methods, write for others) are checked by the project-wide default,
# accounts.permissions.ApiAccess; these add who may use the integrations endpoints at all.
from rest_framework.permissions import BasePermission


class SeesEverything(BasePermission):
    """Webhooks carry company-wide events: admins, planners and integrations only."""

    message = "Only admins, planners and CRM integrations can manage webhooks."

    def has_permission(self, request, view) -> bool:
        return bool(getattr(request.user, "sees_everything", False)) and request.user.is_active


class CanPlan(BasePermission):
    message = "Only planners and admins can import files."

    def has_permission(self, request, view) -> bool:
        return bool(getattr(request.user, "can_plan", False))

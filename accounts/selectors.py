"""Reads of accounts and reps for the API, scoped to what the requesting user may see.

Who may see an account is a question about plans and territories, so the scope itself comes from
`territories.selectors` (account_list, rep_list: see docs/architecture.md); this module adds what
the API lists need on top: the plan a request is scoped by, filters that follow assignments, and
the columns a list reads (the parent's external id in the same query, not one query per row).
The territories module is imported inside the functions: accounts' models stay importable without
the territories app, which imports them.
"""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from tessera_common.errors import ApplicationError

from .models import Account, Rep


def scope_plan(*, user, plan_id=None):
    """The plan a list is scoped by: `plan_id` when given (it must be a plan the user may see),
    otherwise the plan in effect today (None when no plan is active)."""
    from territories import selectors as territory_selectors

    if plan_id in (None, ""):
        return territory_selectors.plan_active_on()
    try:
        pk = int(plan_id)
    except (TypeError, ValueError):
        raise ApplicationError(
            "plan must be a plan id.", {"plan": [f"'{plan_id}' is not a plan id."]}
        ) from None
    plan = territory_selectors.plan_list(user=user).filter(pk=pk).first()
    if plan is None:
        raise ApplicationError(
            f"There is no plan {pk} that you can see.", {"plan": [f"No plan {pk} that you can see."]}
        )
    return plan


def plan_of_territory(*, territory_id) -> int | None:
    """The plan id of a territory, or None when the id is not a territory."""
    from territories.models import Territory

    try:
        pk = int(territory_id)
    except (TypeError, ValueError):
        return None
    return Territory.objects.filter(pk=pk).values_list("plan_id", flat=True).first()


def account_list(*, user, plan=None) -> QuerySet[Account]:
    """Accounts the user may see: everything for planners, admins and integrations; for a manager
    the accounts owned by territories of their subtree in `plan` (today's plan by default); for a
    rep those of their own territories."""
    from territories import selectors as territory_selectors

    return territory_selectors.account_list(user=user, plan=plan).annotate(
        parent_external_id=F("parent__external_id")
    )


def account_owned_by(*, accounts: QuerySet[Account], plan, territory_ids: list[int]) -> QuerySet[Account]:
    """`accounts` narrowed to those whose primary owner in `plan` is one of `territory_ids`."""
    from territories.choices import AssignmentRole
    from territories.models import AccountAssignment

    owned = AccountAssignment.objects.filter(
        plan=plan, territory_id__in=territory_ids, role=AssignmentRole.PRIMARY
    ).values("account_id")
    return accounts.filter(pk__in=owned)


def territory_subtree(*, user, plan, territory_id) -> list[int]:
    """Ids of a territory the user may see in `plan` and of all its descendants; 400 otherwise."""
    from territories import selectors as territory_selectors

    territory = territory_selectors.territory_list(user=user, plan=plan).filter(pk=territory_id).first()
    if territory is None:
        raise ApplicationError(
            f"There is no territory {territory_id} that you can see in plan {plan.pk}.",
            {"territory": [f"No territory {territory_id} that you can see in plan {plan.pk}."]},
        )
    return territory_selectors.territory_subtree_ids(territory=territory)


def territories_of_rep(*, plan, rep_id) -> list[int]:
    """Ids of the territories `rep_id` is a member of in `plan`."""
    from territories.models import TerritoryMembership

    return list(
        TerritoryMembership.objects.filter(territory__plan=plan, rep_id=rep_id).values_list(
            "territory_id", flat=True
        )
    )


def rep_list(*, user, plan=None) -> QuerySet[Rep]:
    """Reps the user may see (all for planners; a manager their subtree's reps and reporting line;
    a rep themselves), with the manager's external id and the login's username in the same query."""
    from territories import selectors as territory_selectors

    return (
        territory_selectors.rep_list(user=user, plan=plan)
        .select_related(None)
        .annotate(manager_external_id=F("manager__external_id"), username=F("user__username"))
    )


def account_search(*, accounts: QuerySet[Account], text: str) -> QuerySet[Account]:
    """Accounts whose name, external id, city or postal code contains `text` (case-insensitive)."""
    text = text.strip()
    if not text:
        return accounts
    return accounts.filter(
        Q(name__icontains=text)
        | Q(external_id__icontains=text)
        | Q(city__icontains=text)
        | Q(postal_code__startswith=text)
    )

"""Lead routing: which territory and reps own a lead or an account on a date, and why.

Writes nothing. A known account (by `external_id`) is answered from the plan in effect: its stored
assignment, explained by the one resolver; an unknown lead is resolved from the facts sent (rules,
then the geography unit containing its location, from latitude/longitude or its postal code's
centroid). Either way the decision is territories.resolver's; this module only gathers the facts
and shapes the answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.contrib.gis.geos import Point
from django.utils import timezone

from accounts.geocoding import normalize_postal_code, postal_code_centroids
from tessera_common.errors import ApplicationError

from . import resolver
from .choices import AssignmentRole
from .models import AccountAssignment, Plan
from .ownership import EMPTY_CARD, Explained, assignment_explained, explain_resolution, territory_cards
from .selectors import account_list, plan_active_on

ROUTE_BATCH_MAX = 1000

# Facts a lead may carry, beyond its location, as the resolver reads them (Account field names).
LEAD_TEXT_FIELDS = ("name", "industry", "segment", "status", "lead_source", "city", "state", "country")
LEAD_NUMBER_FIELDS = ("revenue", "potential", "workload_hours", "employees")


# Compiled rules per (plan, version): every edit of a plan's rules or territories bumps its version
# (services and the admin alike), so a version names one set of rules. A few plans are in effect
# over a CRM's typical range of dates; more are simply compiled again.
_COMPILED: dict[tuple, list] = {}
_COMPILED_MAX = 8


def compiled_rules(plan: Plan) -> list:
    # `created` tells apart two plans that reuse an id (a test database flushed and reset).
    key = (plan.pk, plan.version, plan.created)
    rules = _COMPILED.get(key)
    if rules is None:
        rules = resolver._compile_rules(plan)
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = rules
    return rules


def plan_for_date(at: dt.date | None) -> Plan:
    date = at or timezone.localdate()
    plan = plan_active_on(date=date)
    if plan is None:
        raise ApplicationError(
            f"No published plan is in effect on {date}; publish a plan first or ask about another date.",
            {"at": [f"no plan in effect on {date}"]},
        )
    return plan


def _lead_facts(
    lead: Mapping[str, Any], centroids: dict[str, tuple[float, float]]
) -> tuple[dict, dict | None]:
    """The resolver's facts for an unsaved lead, and where its location came from."""
    facts: dict[str, Any] = {name: lead.get(name) or "" for name in LEAD_TEXT_FIELDS}
    for name in LEAD_NUMBER_FIELDS:
        value = lead.get(name)
        facts[name] = Decimal(str(value)) if value is not None and name != "employees" else value
    postal = normalize_postal_code(lead.get("postal_code"))
    facts["postal_code"] = postal or (lead.get("postal_code") or "")
    facts["attributes"] = lead.get("attributes") or {}
    location = None
    if lead.get("latitude") is not None and lead.get("longitude") is not None:
        facts["location"] = Point(lead["longitude"], lead["latitude"], srid=4326)
        location = {"longitude": lead["longitude"], "latitude": lead["latitude"], "source": "given"}
    elif postal in centroids:
        lon, lat = centroids[postal]
        facts["location"] = Point(lon, lat, srid=4326)
        location = {"longitude": lon, "latitude": lat, "source": "postal_code"}
    else:
        facts["location"] = None
    return facts, location


def route_leads(*, user, leads: Sequence[Mapping[str, Any]], at: dt.date | None = None) -> dict:
    """Route validated leads (dicts of Account field names plus latitude/longitude, external_id and
    parent_external_id) against the plan in effect on `at` (today by default). An external_id names
    a stored account only when the user may see it; otherwise the lead is routed by its facts, so
    the answer reveals nothing about accounts outside the user's scope."""
    date = at or timezone.localdate()
    plan = plan_for_date(date)
    wanted = {lead["external_id"] for lead in leads if lead.get("external_id")}
    wanted |= {lead["parent_external_id"] for lead in leads if lead.get("parent_external_id")}
    visible = account_list(user=user, plan=plan)
    known = {a.external_id: a for a in visible.filter(external_id__in=wanted)} if wanted else {}
    unknown_parents = {
        f"leads.{index}.parent_external_id" if len(leads) > 1 else "parent_external_id": [
            f"no account has external_id {lead['parent_external_id']!r}"
        ]
        for index, lead in enumerate(leads)
        if lead.get("parent_external_id") and lead["parent_external_id"] not in known
    }
    if unknown_parents:
        raise ApplicationError(
            f"{len(unknown_parents)} lead(s) name a parent account that does not exist.", unknown_parents
        )
    stored_ids = [a.pk for a in known.values()]
    assignments = (
        {
            a.account_id: a
            for a in AccountAssignment.objects.filter(
                plan=plan, account_id__in=stored_ids, role=AssignmentRole.PRIMARY
            ).select_related("territory")
        }
        if stored_ids
        else {}
    )
    centroids = postal_code_centroids(
        normalize_postal_code(lead.get("postal_code"))
        for lead in leads
        if lead.get("external_id") not in known
        and (lead.get("latitude") is None or lead.get("longitude") is None)
    )
    # Rules are compiled once per request; every lead goes through the same resolver.
    rules = compiled_rules(plan)

    # Each lead's facts, then (for a batch) every location's unit in one query instead of one each.
    prepared = []
    for lead in leads:
        account = known.get(lead.get("external_id") or "")
        if account is not None:
            prepared.append((lead, account, None, None, account.location))
        else:
            facts, location = _lead_facts(lead, centroids)
            prepared.append((lead, None, facts, location, facts["location"]))
    if len(leads) > 1:
        units = resolver.containing_units(plan, [item[4] for item in prepared])
    else:
        units = [resolver._UNSET]

    answers = []
    for (lead, account, facts, location, _point), unit in zip(prepared, units, strict=True):
        if account is not None:
            explained = assignment_explained(
                plan=plan,
                account=account,
                assignment=assignments.get(account.pk),
                stored_wins_unassigned=False,
                rules=rules,
                unit=unit,
            )
            location = None
            if account.location is not None:
                location = {
                    "longitude": account.location.x,
                    "latitude": account.location.y,
                    "source": "account",
                }
        else:
            parent = known.get(lead.get("parent_external_id") or "")
            parent_owner = assignments.get(parent.pk) if parent is not None else None
            if parent_owner is not None:
                # The family step (parent before rules) with the parent's owner as the plan has it
                # today: the same owner route/ gives for the parent itself.
                territory = parent_owner.territory
                explained = Explained(
                    territory=territory,
                    step=resolver.STEP_PARENT,
                    explanation=(
                        f"Follows its parent account {parent.name} ({parent.external_id}) "
                        f"in {territory.code} {territory.name}."
                    ),
                )
            else:
                resolution = resolver.resolve_facts(
                    plan=plan, facts=facts, parent=parent, _rules=rules, _unit=unit
                )
                explained = explain_resolution(resolution)
        answers.append((lead, account, explained, location))

    territory_ids = {e.territory.pk for _, _, e, _ in answers if e.territory is not None}
    cards = territory_cards(territory_ids)
    plan_ref = {"id": plan.pk, "name": plan.name, "version": plan.version}
    results = []
    for _lead, account, explained, location in answers:
        territory_id = explained.territory.pk if explained.territory is not None else None
        card = cards.get(territory_id, EMPTY_CARD)
        results.append(
            {
                **explained.as_dict(),
                "path": card.path,
                "path_codes": card.path_codes,
                "reps": card.reps,
                "plan": plan_ref,
                "at": date,
                "account": (
                    {"id": account.pk, "external_id": account.external_id, "name": account.name}
                    if account
                    else None
                ),
                "location": location,
            }
        )
    return {"plan": plan_ref, "at": date, "results": results}

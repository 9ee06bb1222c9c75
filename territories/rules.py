"""Assignment-rule conditions: validation and evaluation on one account's facts. Pure (no Django).

A rule holds a list of conditions, all of which must hold: ``{"field": "industry", "op": "in",
"value": ["Healthcare", "Biotech"]}``. The resolver turns the same conditions into SQL for plan
materialization (territories.resolver); tests check that both agree.

Semantics, shared by Python and SQL:
- text fields compare case-insensitively after trimming; postal codes compare as 5-digit ZIPs;
- a missing value (empty text, no number) matches only the negative operators ``ne`` and ``not_in``;
- ``in_postal_list`` matches when the account's postal code is in the rule's postal-code table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

TEXT_FIELDS = (
    "industry",
    "segment",
    "status",
    "lead_source",
    "postal_code",
    "state",
    "city",
    "country",
    "name",
)
NUMBER_FIELDS = ("revenue", "potential", "employees", "workload_hours")
ATTRIBUTE_PREFIX = "attributes."

TEXT_OPS = ("eq", "ne", "in", "not_in", "prefix")
NUMBER_OPS = ("eq", "ne", "in", "not_in", "gte", "lte", "gt", "lt")
LIST_OPS = ("in", "not_in")
NEGATIVE_OPS = ("ne", "not_in")
POSTAL_LIST_OP = "in_postal_list"

OP_WORDS = {
    "eq": "is",
    "ne": "is not",
    "in": "is one of",
    "not_in": "is none of",
    "prefix": "starts with",
    "gte": "is at least",
    "lte": "is at most",
    "gt": "is more than",
    "lt": "is less than",
    POSTAL_LIST_OP: "is in the rule's postal-code list",
}


class RuleConditionError(ValueError):
    """A condition that cannot be evaluated; `index` is its position in the rule's list."""

    def __init__(self, index: int, message: str):
        super().__init__(f"condition {index + 1}: {message}")
        self.index = index


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any  # normalised: str / Decimal / tuple of those / None for in_postal_list

    @property
    def is_attribute(self) -> bool:
        return self.field.startswith(ATTRIBUTE_PREFIX)

    @property
    def attribute_key(self) -> str:
        return self.field[len(ATTRIBUTE_PREFIX) :]

    @property
    def is_number(self) -> bool:
        return self.field in NUMBER_FIELDS

    def describe(self) -> str:
        label = self.field.replace("_", " ")
        if self.op == POSTAL_LIST_OP:
            return f"postal code {OP_WORDS[self.op]}"
        value = ", ".join(str(v) for v in self.value) if isinstance(self.value, tuple) else str(self.value)
        return f"{label} {OP_WORDS[self.op]} {value}"


def normalize_text(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


def normalize_postal(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    digits = text.split("-")[0].strip()
    return digits.zfill(5) if digits.isdigit() and 3 <= len(digits) <= 5 else text.lower()


def _number(value: Any, index: int) -> Decimal:
    if isinstance(value, bool):
        raise RuleConditionError(index, f"{value!r} is not a number")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise RuleConditionError(index, f"{value!r} is not a number") from None
    if not number.is_finite():
        raise RuleConditionError(index, f"{value!r} is not a finite number")
    return number


def parse_conditions(raw: Any) -> list[Condition]:
    """Validate and normalise a rule's conditions; raises RuleConditionError naming the bad one."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise RuleConditionError(0, "conditions must be a list of {field, op, value} objects")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise RuleConditionError(index, "must be an object with field, op and value")
        field = item.get("field")
        op = item.get("op")
        if not isinstance(field, str) or not field:
            raise RuleConditionError(index, "field is missing")
        if not isinstance(op, str):
            raise RuleConditionError(index, "op is missing")
        allowed: tuple[str, ...]
        if field.startswith(ATTRIBUTE_PREFIX):
            key = field[len(ATTRIBUTE_PREFIX) :]
            if not key or not key.replace("_", "").replace("-", "").isalnum():
                raise RuleConditionError(
                    index, f"custom attribute name {key!r} must be letters, digits, - or _"
                )
            allowed = TEXT_OPS
        elif field in TEXT_FIELDS:
            allowed = (*TEXT_OPS, POSTAL_LIST_OP) if field == "postal_code" else TEXT_OPS
        elif field in NUMBER_FIELDS:
            allowed = NUMBER_OPS
        else:
            known = ", ".join((*TEXT_FIELDS, *NUMBER_FIELDS, "attributes.<name>"))
            raise RuleConditionError(index, f"unknown field {field!r}; use one of {known}")
        if op not in allowed:
            raise RuleConditionError(
                index, f"operator {op!r} does not apply to {field}; use one of {', '.join(allowed)}"
            )

        value = item.get("value")
        if op == POSTAL_LIST_OP:
            parsed.append(Condition(field, op, None))
            continue
        if op in LIST_OPS:
            if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
                raise RuleConditionError(index, f"{op} needs a non-empty list of values")
            values = list(value)
        else:
            if value is None or isinstance(value, list | tuple | dict):
                raise RuleConditionError(index, f"{op} needs a single value")
            values = [value]
        if field in NUMBER_FIELDS:
            normalised: list[Any] = [_number(v, index) for v in values]
        elif field == "postal_code":
            normalised = [normalize_postal(v) for v in values]
        else:
            normalised = [normalize_text(v) for v in values]
            if any(v == "" for v in normalised):
                raise RuleConditionError(index, "empty text values never match; remove them")
        parsed.append(Condition(field, op, tuple(normalised) if op in LIST_OPS else normalised[0]))
    return parsed


def account_value(condition: Condition, facts: Mapping[str, Any]) -> Any:
    """The account's value for a condition, normalised like the condition's values (None = missing)."""
    if condition.is_attribute:
        raw = (facts.get("attributes") or {}).get(condition.attribute_key)
        text = normalize_text(raw)
        return text or None
    raw = facts.get(condition.field)
    if condition.is_number:
        if raw is None or raw == "":
            return None
        try:
            return Decimal(str(raw))
        except (InvalidOperation, ValueError):
            return None
    text = normalize_postal(raw) if condition.field == "postal_code" else normalize_text(raw)
    return text or None


def condition_matches(
    condition: Condition, facts: Mapping[str, Any], postal_list: frozenset[str] = frozenset()
) -> bool:
    value = account_value(condition, facts)
    op = condition.op
    if op == POSTAL_LIST_OP:
        return value is not None and value in postal_list
    if value is None:
        return op in NEGATIVE_OPS
    target = condition.value
    if op == "eq":
        return value == target
    if op == "ne":
        return value != target
    if op == "in":
        return value in target
    if op == "not_in":
        return value not in target
    if op == "prefix":
        return str(value).startswith(str(target))
    if op == "gte":
        return value >= target
    if op == "lte":
        return value <= target
    if op == "gt":
        return value > target
    if op == "lt":
        return value < target
    raise AssertionError(op)


def rule_matches(
    conditions: Sequence[Condition], facts: Mapping[str, Any], postal_list: frozenset[str] = frozenset()
) -> bool:
    """All conditions hold (a rule with no conditions matches every account: a catch-all)."""
    return all(condition_matches(c, facts, postal_list) for c in conditions)

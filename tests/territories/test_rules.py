"""The pure rule-condition core: validation and evaluation without Django."""

from decimal import Decimal

import pytest

from territories import rules


def test_parse_normalises_text_and_numbers():
    parsed = rules.parse_conditions(
        [
            {"field": "industry", "op": "in", "value": [" Healthcare ", "BIOTECH"]},
            {"field": "revenue", "op": "gte", "value": "1000000"},
            {"field": "postal_code", "op": "eq", "value": "2134"},
        ]
    )
    assert parsed[0].value == ("healthcare", "biotech")
    assert parsed[1].value == Decimal("1000000")
    assert parsed[2].value == "02134"


@pytest.mark.parametrize(
    "raw, words",
    [
        ([{"field": "colour", "op": "eq", "value": "red"}], "unknown field 'colour'"),
        ([{"field": "revenue", "op": "prefix", "value": "1"}], "operator 'prefix' does not apply to revenue"),
        ([{"field": "revenue", "op": "gte", "value": "lots"}], "'lots' is not a number"),
        ([{"field": "industry", "op": "in", "value": []}], "needs a non-empty list"),
        ([{"field": "industry", "op": "eq", "value": ["a"]}], "needs a single value"),
        ([{"field": "industry", "op": "eq", "value": "  "}], "empty text values never match"),
        ([{"field": "industry", "op": "in_postal_list"}], "does not apply to industry"),
        ([{"op": "eq", "value": "x"}], "field is missing"),
        ("industry = x", "must be a list"),
        ([{"field": "attributes.a b", "op": "eq", "value": "x"}], "attribute name"),
    ],
)
def test_parse_rejects_bad_conditions_naming_them(raw, words):
    with pytest.raises(rules.RuleConditionError) as error:
        rules.parse_conditions(raw)
    assert words in str(error.value)


def test_second_condition_is_named_by_position():
    with pytest.raises(rules.RuleConditionError, match="condition 2"):
        rules.parse_conditions(
            [{"field": "industry", "op": "eq", "value": "x"}, {"field": "nope", "op": "eq", "value": 1}]
        )


def _match(conditions, **facts):
    return rules.rule_matches(rules.parse_conditions(conditions), facts)


def test_text_comparisons_ignore_case_and_spaces():
    assert _match([{"field": "industry", "op": "eq", "value": "healthcare"}], industry=" HealthCare ")
    assert not _match([{"field": "industry", "op": "eq", "value": "healthcare"}], industry="Retail")
    assert _match([{"field": "name", "op": "prefix", "value": "acme"}], name="ACME Corp")


def test_missing_values_match_only_negative_operators():
    assert not _match([{"field": "employees", "op": "gte", "value": 1}], employees=None)
    assert _match([{"field": "employees", "op": "ne", "value": 5}], employees=None)
    assert _match([{"field": "industry", "op": "not_in", "value": ["x"]}], industry="")
    assert not _match([{"field": "industry", "op": "in", "value": ["x"]}], industry="")


def test_numbers_and_attributes():
    conditions = [
        {"field": "revenue", "op": "gt", "value": 100},
        {"field": "attributes.tier", "op": "in", "value": ["gold", "1"]},
    ]
    assert _match(conditions, revenue=Decimal("101"), attributes={"tier": "Gold"})
    assert _match(conditions, revenue=101, attributes={"tier": 1})
    assert not _match(conditions, revenue=100, attributes={"tier": "gold"})
    assert not _match(conditions, revenue=500, attributes={})


def test_postal_list_and_catch_all():
    parsed = rules.parse_conditions([{"field": "postal_code", "op": "in_postal_list"}])
    assert rules.rule_matches(parsed, {"postal_code": "2134"}, frozenset({"02134"}))
    assert not rules.rule_matches(parsed, {"postal_code": ""}, frozenset({"02134"}))
    assert rules.rule_matches([], {"industry": "anything"})


def test_describe_reads_like_a_sentence():
    parsed = rules.parse_conditions([{"field": "lead_source", "op": "in", "value": ["Web", "Event"]}])
    assert parsed[0].describe() == "lead source is one of web, event"

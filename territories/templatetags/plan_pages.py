"""Filters for the plan, compare, review, account and rep pages."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """mapping[key] in a template (metrics are keyed by name); None when missing."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def signed(value, digits: int = 0) -> str:
    """A delta with its sign: 1234 → '+1,234', -0.5 → '−1' (digits 0), 0 → '0'."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    text = f"{abs(number):,.{int(digits)}f}"
    if float(text.replace(",", "")) == 0:
        return text
    return ("+" if number > 0 else "−") + text


@register.filter
def signed_percent(value, digits: int = 1) -> str:
    """A share as a signed percentage: 0.123 → '+12.3%'."""
    try:
        number = float(value) * 100
    except (TypeError, ValueError):
        return ""
    return signed(number, digits) + "%"


@register.filter
def delta_class(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "delta-up" if number > 0 else "delta-down" if number < 0 else ""

from django import template

register = template.Library()


@register.filter
def thousands(value) -> str:
    """12345 → '12,345' without turning on localisation project-wide."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


@register.filter
def percent(value, digits: int = 0) -> str:
    try:
        return f"{float(value) * 100:.{int(digits)}f}%"
    except (TypeError, ValueError):
        return ""

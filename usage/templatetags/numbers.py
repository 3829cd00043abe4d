from django import template

register = template.Library()


@register.filter
def thousands(value: int) -> str:
    """1234567 -> "1,234,567" (what floatformat:"g" prints, at a fraction of its cost in long tables)."""
    return f"{value:,}"

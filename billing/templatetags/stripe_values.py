from datetime import UTC, datetime

from django import template

register = template.Library()


@register.filter
def cents(amount) -> str:
    """Stripe's integer minor units as a decimal amount: 2900 -> "29.00"."""
    return f"{(amount or 0) / 100:,.2f}"


@register.filter
def timestamp(value) -> datetime | None:
    """A Stripe Unix timestamp as a datetime, for the date filter."""
    return datetime.fromtimestamp(value, UTC) if value else None


INVOICE_STATUSES = {"draft": "Draft", "open": "Due", "paid": "Paid", "uncollectible": "Uncollectible", "void": "Void"}


@register.filter
def invoice_status(status) -> str:
    """An invoice's status as customers read it: Stripe's "open" is an invoice still to pay."""
    return INVOICE_STATUSES.get(status, status or "")

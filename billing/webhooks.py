"""Stripe's webhook events: verified, stored once, processed by re-reading their customer."""

import logging

from django.db import transaction
from django.utils import timezone

from billing.customers import customer_id_of, sync
from billing.models import Customer, WebhookEvent

log = logging.getLogger(__name__)

# Events that change a customer's state; each is handled by re-reading that customer.
HANDLED_EVENTS = {
    "checkout.session.completed",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
}


def is_event(payload) -> bool:
    """Verified JSON of the shape of an event that we can store (a signed `{}` is valid JSON, not an event)."""
    if not isinstance(payload, dict):
        return False
    event_id, data = payload.get("id"), payload.get("data")
    return (
        isinstance(event_id, str)
        and 1 <= len(event_id) <= WebhookEvent._meta.get_field("id").max_length
        and isinstance(payload.get("type"), str)
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    )


def receive(event: dict) -> WebhookEvent | None:
    """Store a verified event (is_event) once; None for event types we ignore."""
    if event["type"] not in HANDLED_EVENTS:
        return None
    stored, _ = WebhookEvent.objects.get_or_create(id=event["id"], defaults={"type": event["type"], "payload": event})
    return stored


def process(event_id: str) -> None:
    """Process a stored event unless done already; concurrent deliveries wait for the first.

    Any failure (Stripe unreachable, an event or a subscription we cannot read) is recorded on
    the event, which reconciliation retries; it never stops the events after it.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(id=event_id)
        if event.processed_at:
            return
        try:
            with transaction.atomic():  # a failure rolls back to here, keeping the lock to record it
                stripe_id = customer_id_of(event.payload["data"]["object"])
                customer = Customer.objects.filter(stripe_id=stripe_id).first() if stripe_id else None
                if customer is not None:
                    sync(customer)
            event.processed_at = timezone.now()
            event.error = ""
        except Exception as error:
            log.warning("Stripe event %s not processed", event_id, exc_info=True)
            event.error = f"{type(error).__name__}: {error}"
        event.save()

"""Reconciliation (manage.py sync_stripe, from the scheduler): what webhooks missed."""

import logging

from accounts.models import Organization
from billing.customers import ensure_stripe_customer, sync
from billing.models import Customer, WebhookEvent
from billing.webhooks import process

log = logging.getLogger(__name__)


def reconcile() -> dict[str, int]:
    """Create missing Stripe customers, re-sync every customer, process events left unprocessed."""
    counts = {"created": 0, "synced": 0, "events": 0, "failed": 0}
    # Active organizations with a non-staff member (staff's own are no customers), without one yet.
    customers = Organization.objects.filter(is_active=True, memberships__user__is_staff=False).distinct()
    for organization in customers.exclude(customer__stripe_id__gt=""):
        try:
            ensure_stripe_customer(organization)
            counts["created"] += 1
        except Exception:  # Stripe unreachable, or anything else: the next customers still go on
            log.warning("Cannot create the Stripe customer of %s", organization, exc_info=True)
            counts["failed"] += 1
    for customer in Customer.objects.exclude(stripe_id=""):
        try:
            sync(customer)
            counts["synced"] += 1
        except Exception:
            log.warning("Cannot sync %s", customer, exc_info=True)
            counts["failed"] += 1
    for event_id in WebhookEvent.objects.filter(processed_at__isnull=True).values_list("id", flat=True):
        process(event_id)
        counts["events"] += 1
    return counts

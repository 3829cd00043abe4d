"""Metered billing: pay-as-you-go customers' words, reported to Stripe as meter events."""

from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.utils import timezone

from billing.models import Customer, MeterReport
from usage.queries import words_per_hour


def report_words(now: datetime) -> int:
    """Report each pay-as-you-go customer's words per finished hour as Stripe meter events.

    Each (customer, hour) gets a deterministic identifier, recorded here before it
    is sent: a second run, or one after a crash, re-sends only what Stripe has not
    acknowledged, and Stripe drops an identifier it has seen. Returns events sent.
    """
    # Hours that ended at least ten minutes ago: the last calls' words have arrived.
    finished = (now - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    metered = Customer.objects.filter(plan__metered=True, metered_since__isnull=False).exclude(stripe_id="")
    customers = {customer.user_id: customer for customer in metered}
    since = finished - timedelta(days=30)  # Stripe takes events up to 35 days old
    rows = words_per_hour(
        {user: customer.metered_since for user, customer in customers.items()}, since, finished
    ).rows()
    for row in rows:
        customer = customers[row["account_id"]]
        MeterReport.objects.get_or_create(
            customer=customer,
            hour=row["bucket"],
            defaults={"words": row["words"], "identifier": f"words-{customer.stripe_id}-{row['bucket']:%Y%m%dT%H}"},
        )
    sent = 0
    for report in MeterReport.objects.filter(reported_at__isnull=True).select_related("customer"):
        stripe.billing.MeterEvent.create(
            event_name=settings.STRIPE_METER_EVENT_NAME,
            payload={"stripe_customer_id": report.customer.stripe_id, "value": str(report.words)},
            identifier=report.identifier,
            timestamp=int(report.hour.timestamp()),
        )
        report.reported_at = timezone.now()
        report.save(update_fields=["reported_at"])
        sent += 1
    return sent

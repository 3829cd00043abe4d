"""Metered billing: pay-as-you-go customers' words, reported to Stripe as meter events."""

from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.utils import timezone

from billing.models import Customer, MeterReport
from usage.queries import METERED_WORDS_SQL, fetch


def report_words(now: datetime) -> int:
    """Report each pay-as-you-go customer's words per finished hour as Stripe meter events.

    Each (customer, hour) gets a deterministic identifier, recorded here before it
    is sent: a second run, or one after a crash, re-sends only what Stripe has not
    acknowledged, and Stripe drops an identifier it has seen. Returns events sent.
    """
    # Hours that ended at least ten minutes ago: the last calls' words have arrived.
    finished = (now - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    rows = fetch(
        METERED_WORDS_SQL,
        {"finished": finished, "since": finished - timedelta(days=30)},  # Stripe takes events up to 35 days old
    )
    customers = {c.user_id: c for c in Customer.objects.filter(user_id__in={row["account_id"] for row in rows})}
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

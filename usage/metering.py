"""Metered billing: pay-as-you-go customers' words, reported to Stripe as meter events."""

from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone

from billing.models import Customer, MeterReport
from usage.queries import words_per_hour


def report_words(now: datetime) -> int:
    """Report each pay-as-you-go customer's words per finished hour as Stripe meter events.

    An hour's first report carries its words; when quantities arrive after it (a
    model service reporting late), a later run finds the hour's words grown and
    reports the difference as the hour's next delta. Each report gets a
    deterministic identifier and is recorded here before it is sent: a second
    run, or one after a crash, re-sends only what Stripe has not acknowledged,
    and Stripe drops an identifier it has seen. Returns events sent.
    """
    # Hours that ended at least ten minutes ago: most calls' words have arrived; later ones are deltas.
    finished = (now - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    metered = Customer.objects.filter(plan__metered=True, metered_since__isnull=False).exclude(stripe_id="")
    customers = {customer.organization_id: customer for customer in metered}
    since = finished - timedelta(days=30)  # Stripe takes events up to 35 days old
    rows = words_per_hour(
        {account: customer.metered_since for account, customer in customers.items()}, since, finished
    ).rows()
    reported = {
        (r["customer_id"], r["hour"]): r
        for r in MeterReport.objects.filter(customer__in=customers.values(), hour__gte=since)
        .values("customer_id", "hour")
        .annotate(words=Sum("words"), last=Max("sequence"))
    }
    for row in rows:
        customer = customers[row["account_id"]]
        hour = row["bucket"]
        before = reported.get((customer.pk, hour))
        if before is None:
            _record(customer, hour, 0, row["words"])
        elif row["words"] > before["words"]:  # late quantities: the hour grew since it was reported
            _record(customer, hour, before["last"] + 1, row["words"] - before["words"])
    sent = 0
    for report in MeterReport.objects.filter(reported_at__isnull=True).select_related("customer"):
        stripe.billing.MeterEvent.create(
            event_name=settings.STRIPE_METER_EVENT_NAME,
            payload={"stripe_customer_id": report.customer.stripe_id, "value": str(report.words)},
            identifier=report.identifier,
            timestamp=int((report.dated or report.hour).timestamp()),
        )
        report.reported_at = timezone.now()
        report.save(update_fields=["reported_at"])
        sent += 1
    return sent


def _record(customer: Customer, hour: datetime, sequence: int, words: int) -> None:
    """One report, before it is sent. Concurrent runs race for the same (customer, hour, sequence):
    one row wins and the other run finds it, so no words are reported twice."""
    identifier = f"words-{customer.stripe_id}-{hour:%Y%m%dT%H}" + (f"-{sequence}" if sequence else "")
    # Dated in its hour, unless that hour's period is over (its invoice may be final: the words would bill
    # nobody): then at the current period's start, so the next invoice carries them.
    period_start = customer.current_period_start
    dated = period_start if period_start and hour < period_start else hour
    MeterReport.objects.get_or_create(
        customer=customer,
        hour=hour,
        sequence=sequence,
        defaults={"words": words, "identifier": identifier, "dated": dated},
    )

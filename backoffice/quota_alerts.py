"""Quota alerts: customers e-mailed when the period's calls (and, on pay-as-you-go, words) reach
their thresholds of a quota. Run by `manage.py send_quota_alerts` (every 5 minutes), never by
forward-auth: it reads the usage store's aggregates (usage/queries.py) and billing's customers.

Each threshold reached is recorded once per period (QuotaAlert, unique) before any e-mail
goes; the e-mail marks it sent. A run that crashes or cannot reach the mail server leaves
it unsent and the next run sends it; thresholds reached together get one e-mail, the highest.
"""

import logging
from datetime import datetime
from itertools import groupby
from operator import attrgetter

from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from billing.models import CallsBlocked, Customer, QuotaAlert
from usage.queries import period_use

log = logging.getLogger(__name__)


def quotas_of(customer: Customer) -> dict[str, int]:
    """What the customer's alerts count against: the plan's calls per period, their own words budget (metered)."""
    quotas = {}
    if customer.plan.per_month:
        quotas[QuotaAlert.Measure.CALLS] = customer.plan.per_month
    if customer.plan.metered and customer.words_alert_quota:
        quotas[QuotaAlert.Measure.WORDS] = customer.words_alert_quota
    if customer.plan.metered and customer.spend_cap_cents and customer.plan.cents_per_1000_words:
        quotas[QuotaAlert.Measure.SPEND] = customer.spend_cap_cents
    return quotas


def billed_since(customer: Customer, now: datetime) -> datetime:
    """Where the period's billed words begin: its start, or the move to this metered plan if later."""
    start = customer.billing_period(now)[0]
    return max(start, customer.metered_since or start)


def record_reached(now: datetime) -> int:
    """Record each threshold newly reached this period; returns how many. Calls count from the
    period's start, words (their budget, the spend cap) from billed_since, as the cap's job counts them."""
    watched = {}
    for customer in Customer.objects.select_related("plan").exclude(alert_thresholds=[]):
        if quotas := quotas_of(customer):
            watched[customer.organization_id] = (customer, customer.billing_period(now)[0], quotas)
    if not watched:
        return 0
    calls = {row["account_id"]: row["calls"] or 0 for row in period_use({a: w[1] for a, w in watched.items()}).rows()}
    billed = {a: billed_since(customer, now) for a, (customer, _, _) in watched.items()}
    words = {row["account_id"]: row["words"] or 0 for row in period_use(billed).rows()}
    recorded = 0
    for account, (customer, start, quotas) in watched.items():
        for measure, quota in quotas.items():
            if measure == QuotaAlert.Measure.CALLS:
                used = calls.get(account, 0)
            elif measure == QuotaAlert.Measure.WORDS:
                used = words.get(account, 0)
            else:
                used = int(spend_cents(words.get(account, 0), customer))
            for threshold in customer.alert_thresholds:
                if used * 100 >= threshold * quota:
                    _, created = QuotaAlert.objects.get_or_create(
                        customer=customer,
                        measure=measure,
                        threshold=threshold,
                        period_start=start,
                        defaults={"used": used, "quota": quota},
                    )
                    recorded += created
    return recorded


def send_pending() -> int:
    """E-mail the alerts not sent yet: one e-mail per customer, measure and period, for the highest threshold."""
    pending = QuotaAlert.objects.filter(sent_at__isnull=True).select_related("customer__organization", "customer__plan")
    sent = 0
    key = attrgetter("customer_id", "measure", "period_start")
    for _, group in groupby(sorted(pending, key=key), key=key):
        alerts = list(group)
        highest = max(alerts, key=lambda alert: alert.threshold)
        recipients = highest.customer.organization.billing_emails()
        if not recipients:  # no active owner or billing member now: kept until there is one
            log.warning("Quota alert of %s has no recipient", highest.customer.organization)
            continue
        try:
            send_mail(*message(highest), None, recipients)
        except OSError:  # the mail server: the next run tries again
            log.exception("Quota alert to %s not sent", highest.customer.organization)
            continue
        QuotaAlert.objects.filter(pk__in=[alert.pk for alert in alerts]).update(sent_at=timezone.now())
        sent += 1
    return sent


def message(alert: QuotaAlert) -> tuple[str, str]:
    """The e-mail's subject and body."""
    customer = alert.customer
    if alert.measure == QuotaAlert.Measure.SPEND:
        return spend_message(alert)
    what = "calls" if alert.measure == QuotaAlert.Measure.CALLS else "words"
    quota = f"{alert.quota:,} {what} per billing period" + (
        f" ({customer.plan} plan)" if alert.measure == QuotaAlert.Measure.CALLS else " (your alert budget)"
    )
    if alert.threshold >= 100:
        subject = f"You have reached your quota of {what}"
    else:
        subject = f"You have used {alert.threshold}% of your quota of {what}"
    consequence = {
        QuotaAlert.Measure.CALLS: "At 100%, further calls are refused (429) until the next billing period; "
        "a higher plan raises the quota at once.",
        QuotaAlert.Measure.WORDS: "Words are billed as they are used; this budget only sets when we tell you.",
    }[alert.measure]
    body = (
        f"Hello,\n\nYou have used {alert.used:,} {what} of your quota of {quota} since "
        f"{alert.period_start:%d %B %Y}: {alert.threshold}% or more.\n\n{consequence}\n\n"
        "Your usage, plans and alert thresholds are on the Dashboard and Billing pages of your account.\n"
    )
    return subject, body


def spend_message(alert: QuotaAlert) -> tuple[str, str]:
    """The e-mail before (or at) the spend cap, in dollars."""
    if alert.threshold >= 100:
        subject = "You have reached your spend cap: API calls are blocked"
    else:
        subject = f"You have used {alert.threshold}% of your spend cap"
    body = (
        f"Hello,\n\nYour words since {alert.period_start:%d %B %Y} cost ${alert.used / 100:,.2f} of your spend cap "
        f"of ${alert.quota / 100:,.2f} per billing period: {alert.threshold}% or more.\n\n"
        "At 100%, every call is refused (402 Spend cap reached) until the next billing period or a higher cap; "
        "you can raise or remove the cap on the Billing page of your account.\n"
    )
    return subject, body


def current_alerts(customer: Customer, now: datetime) -> list[QuotaAlert]:
    """The thresholds reached this period, highest first per measure (the dashboard)."""
    start = customer.billing_period(now)[0]
    return list(customer.quota_alerts.filter(period_start=start).order_by("measure", "-threshold"))


def spend_cents(words: int, customer: Customer) -> float:
    """What the words cost on the customer's (metered) plan, in cents."""
    return words * (customer.plan.cents_per_1000_words or 0) / 1000


def apply_spend_caps(now: datetime) -> tuple[int, int]:
    """Block the pay-as-you-go customers whose period's metered words cost their spend cap or more
    (calls_blocked = spend_cap: forward-auth refuses their calls), and unblock those now under it
    (a new period, a raised or removed cap, another plan). Returns (blocked, unblocked).

    A payment_failed block is never touched here: billing.customers.apply_subscription owns it.
    """
    capped = Customer.objects.select_related("plan").filter(
        Q(calls_blocked=CallsBlocked.SPEND_CAP)
        | Q(spend_cap_cents__isnull=False, plan__metered=True, plan__cents_per_1000_words__isnull=False)
    )
    starts = {customer.organization_id: (customer, billed_since(customer, now)) for customer in capped}
    words = (
        {row["account_id"]: row["words"] or 0 for row in period_use({u: s for u, (_, s) in starts.items()}).rows()}
        if starts
        else {}
    )
    blocked = unblocked = 0
    for account, (customer, _) in starts.items():
        over = (
            customer.plan.metered
            and customer.spend_cap_cents is not None
            and spend_cents(words.get(account, 0), customer) >= customer.spend_cap_cents
        )
        if over and customer.calls_blocked == CallsBlocked.NO:
            blocked += Customer.objects.filter(pk=customer.pk, calls_blocked=CallsBlocked.NO).update(
                calls_blocked=CallsBlocked.SPEND_CAP
            )
        elif not over and customer.calls_blocked == CallsBlocked.SPEND_CAP:
            unblocked += Customer.objects.filter(pk=customer.pk, calls_blocked=CallsBlocked.SPEND_CAP).update(
                calls_blocked=CallsBlocked.NO
            )
    return blocked, unblocked

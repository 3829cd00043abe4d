"""Everything that talks to Stripe. The API never waits on it: forward-auth reads the
cached state (billing.Customer), which webhooks and reconciliation keep current.

Each sync re-reads the customer, its subscriptions and invoices from Stripe and
stores them as Stripe returned them, so events that arrive twice or out of
order can never leave an older state behind.
"""

import logging
from datetime import UTC, datetime, timedelta

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import PAYING_STATUSES, Customer, MeterReport, Plan, WebhookEvent

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
INVOICES_KEPT = 12


def configure() -> None:
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = settings.STRIPE_API_BASE
    stripe.max_network_retries = 2  # with idempotency keys, so a retried create creates once
    stripe.default_http_client = stripe.RequestsClient(timeout=10)


def enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def customer_of(user) -> Customer:
    customer, _ = Customer.objects.get_or_create(user=user, defaults={"plan": Plan.objects.default()})
    return customer


def start_billing(user) -> Customer:
    """At sign-up: the Free plan, and the Stripe customer unless Stripe is out of reach (reconciliation retries)."""
    if enabled():
        try:
            return ensure_stripe_customer(user)
        except stripe.StripeError as error:
            log.warning("Stripe customer for %s not created at sign-up: %s", user, error)
    return customer_of(user)


def ensure_stripe_customer(user) -> Customer:
    """The user's Customer with its Stripe customer, created once.

    Raises stripe.StripeError when Stripe is unreachable: sign-up goes on without
    it and reconciliation tries again. The idempotency key makes a retry (ours or
    the client's) return the customer the first attempt created.
    """
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_of(user).pk)
        if customer.stripe_id:
            return customer
        created = stripe.Customer.create(
            email=user.email, metadata={"user_id": str(user.pk)}, idempotency_key=f"customer-for-user-{user.pk}"
        )
        customer.stripe_id = created.id
        customer.stripe_customer = created.to_dict()
        customer.synced_at = timezone.now()
        customer.save()
    return customer


def sync(customer: Customer) -> Customer:
    """Re-read the customer, its newest subscription and its invoices from Stripe; derive the plan.

    Under a row lock: two syncs of one customer (a webhook and reconciliation)
    run one after the other, so the later read is the one saved.
    """
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        _sync(locked)
    customer.refresh_from_db()
    return customer


def _sync(customer: Customer) -> None:
    remote = stripe.Customer.retrieve(customer.stripe_id).to_dict()
    customer.stripe_customer = remote
    if remote.get("deleted"):
        customer.stripe_subscription = customer.stripe_upcoming_invoice = None
    else:
        subscriptions = [s.to_dict() for s in stripe.Subscription.list(customer=customer.stripe_id, status="all", limit=10).data]
        customer.stripe_subscription = max(
            subscriptions, key=lambda s: (s.get("status") in PAYING_STATUSES, s.get("created", 0)), default=None
        )
        invoices = stripe.Invoice.list(customer=customer.stripe_id, limit=INVOICES_KEPT).data
        customer.stripe_invoices = [invoice.to_dict() for invoice in invoices]
        customer.stripe_upcoming_invoice = upcoming_invoice(customer)
    apply_subscription(customer)
    customer.synced_at = timezone.now()
    customer.save()


def upcoming_invoice(customer: Customer) -> dict | None:
    if not customer.is_paying:
        return None
    try:
        return stripe.Invoice.create_preview(customer=customer.stripe_id).to_dict()
    except stripe.InvalidRequestError:  # nothing to invoice
        return None


def apply_subscription(customer: Customer) -> None:
    """The plan and billing period the cached subscription grants; Free when it grants none."""
    subscription = customer.stripe_subscription
    plan = Plan.objects.filter(stripe_price_id=price_of(subscription), stripe_price_id__gt="").first() if subscription else None
    if subscription and subscription.get("status") in PAYING_STATUSES and plan:
        customer.current_period_start = moment(period_of(subscription, "start"))
        customer.current_period_end = moment(period_of(subscription, "end"))
    else:  # past_due, unpaid, canceled, incomplete or none
        plan = Plan.objects.default()
        customer.current_period_start = customer.current_period_end = None
    if not plan.metered:
        customer.metered_since = None
    elif customer.metered_since is None or customer.plan_id != plan.pk:
        customer.metered_since = timezone.now()  # words used on an earlier plan are not billed per word
    customer.plan = plan


def price_of(subscription: dict) -> str | None:
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        return None
    item = items[0]
    return (item.get("price") or {}).get("id") or (item.get("plan") or {}).get("id")


def period_of(subscription: dict, edge: str) -> int | None:
    """The current period's start or end: on the subscription (older API versions) or its item (newer)."""
    items = (subscription.get("items") or {}).get("data") or [{}]
    return subscription.get(f"current_period_{edge}") or items[0].get(f"current_period_{edge}")


def moment(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


# Webhooks.


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

    A failure (Stripe unreachable) is recorded on the event and left to reconciliation.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(id=event_id)
        if event.processed_at:
            return
        try:
            stripe_id = customer_id_of(event.payload["data"]["object"])
            customer = Customer.objects.filter(stripe_id=stripe_id).first() if stripe_id else None
            if customer is not None:
                with transaction.atomic():
                    sync(customer)
            event.processed_at = timezone.now()
            event.error = ""
        except stripe.StripeError as error:
            log.warning("Stripe event %s not processed: %s", event_id, error)
            event.error = str(error)
        event.save()


def customer_id_of(obj: dict) -> str | None:
    if obj.get("object") == "customer":
        return obj.get("id")
    customer = obj.get("customer")
    return customer.get("id") if isinstance(customer, dict) else customer


# Plan changes.


def checkout_url(customer: Customer, plan: Plan, success_url: str, cancel_url: str) -> str:
    """Stripe Checkout for the first paid subscription."""
    session = stripe.checkout.Session.create(
        mode="subscription",
        customer=customer.stripe_id,
        line_items=[{"price": plan.stripe_price_id, "quantity": 1}],
        success_url=success_url,
        cancel_url=cancel_url,
        client_reference_id=str(customer.user_id),
    )
    return session.url


def complete_checkout(customer: Customer, session_id: str) -> None:
    """Back from Checkout: sync at once rather than wait for the webhook."""
    session = stripe.checkout.Session.retrieve(session_id).to_dict()
    if customer_id_of(session) == customer.stripe_id:
        sync(customer)


def portal_url(customer: Customer, return_url: str) -> str:
    """The Customer Portal: payment methods, invoices, cancellation."""
    return stripe.billing_portal.Session.create(customer=customer.stripe_id, return_url=return_url).url


def switch_plan(customer: Customer, plan: Plan) -> None:
    """Move a paying customer to another paid plan now, prorated (then sync to see it here)."""
    subscription = customer.stripe_subscription
    item = subscription["items"]["data"][0]
    stripe.Subscription.modify(
        subscription["id"],
        items=[{"id": item["id"], "price": plan.stripe_price_id}],
        proration_behavior="create_prorations",
    )


# Reconciliation.


def reconcile() -> dict[str, int]:
    """Create missing Stripe customers, re-sync every customer, process events left unprocessed."""
    from accounts.models import User

    counts = {"created": 0, "synced": 0, "events": 0, "failed": 0}
    for user in User.objects.filter(is_staff=False).exclude(customer__stripe_id__gt=""):
        try:
            ensure_stripe_customer(user)
            counts["created"] += 1
        except stripe.StripeError as error:
            log.warning("Cannot create the Stripe customer of %s: %s", user, error)
            counts["failed"] += 1
    for customer in Customer.objects.exclude(stripe_id=""):
        try:
            sync(customer)
            counts["synced"] += 1
        except stripe.StripeError as error:
            log.warning("Cannot sync %s: %s", customer, error)
            counts["failed"] += 1
    for event_id in WebhookEvent.objects.filter(processed_at__isnull=True).values_list("id", flat=True):
        process(event_id)
        counts["events"] += 1
    return counts


# Metered usage.


def report_words(now: datetime) -> int:
    """Report each pay-as-you-go customer's words per finished hour as Stripe meter events.

    Each (customer, hour) gets a deterministic identifier, recorded here before it
    is sent: a second run, or one after a crash, re-sends only what Stripe has not
    acknowledged, and Stripe drops an identifier it has seen. Returns events sent.
    """
    from usage.queries import fetch

    # Hours that ended at least ten minutes ago: the last calls' words have arrived.
    finished = (now - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    rows = fetch(
        """
        SELECT h.account_id, h.bucket, sum(h.words)::bigint AS words
        FROM api_calls_hourly h
        JOIN billing_customer c ON c.user_id = h.account_id
        JOIN billing_plan p ON p.id = c.plan_id
        WHERE p.metered AND c.stripe_id <> '' AND h.bucket < %(finished)s AND h.bucket >= %(since)s
          AND h.bucket >= date_trunc('hour', c.metered_since)
        GROUP BY h.account_id, h.bucket
        HAVING sum(h.words) > 0
        """,
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

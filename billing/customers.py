"""Customers and their Stripe state. The API never waits on Stripe: forward-auth reads the
cached state (billing.Customer), which webhooks and reconciliation keep current.

Each sync re-reads the customer, its subscriptions and invoices from Stripe and
stores them as Stripe returned them, so events that arrive twice or out of
order can never leave an older state behind.
"""

import logging

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.organizations import record
from billing.models import PAYING_STATUSES, CallsBlocked, Customer, Plan, moment, period_of
from billing.stripe_client import enabled

log = logging.getLogger(__name__)

INVOICES_KEPT = 12


def customer_of(organization) -> Customer:
    customer, _ = Customer.objects.get_or_create(organization=organization, defaults={"plan": Plan.objects.default()})
    return customer


def start_billing(organization) -> Customer:
    """At sign-up: the Free plan, and the Stripe customer unless Stripe is out of reach (reconciliation retries)."""
    if enabled():
        try:
            return ensure_stripe_customer(organization)
        except stripe.StripeError as error:
            log.warning("Stripe customer for %s not created at sign-up: %s", organization, error)
    return customer_of(organization)


def ensure_stripe_customer(organization) -> Customer:
    """The organization's Customer with its Stripe customer (e-mailed at its first owner), created once.

    Raises stripe.StripeError when Stripe is unreachable: sign-up goes on without
    it and reconciliation tries again. The idempotency key makes a retry (ours or
    the client's) return the customer the first attempt created.
    """
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_of(organization).pk)
        if customer.stripe_id:
            return customer
        owner = organization.owners.select_related("user").first()
        created = stripe.Customer.create(
            email=owner.user.email if owner else None,
            name=organization.name,
            metadata={"organization_id": str(organization.pk)},
            idempotency_key=f"customer-for-organization-{organization.pk}",
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
        subscriptions = [
            s.to_dict() for s in stripe.Subscription.list(customer=customer.stripe_id, status="all", limit=10).data
        ]
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
    """The plan and billing period the cached subscription grants; Free when it grants none.

    A past_due subscription keeps its plan for FAILED_PAYMENT_GRACE_DAYS after the
    payment failed (0: not at all); reconciliation re-applies this every 15 minutes,
    so the grace ends then even if Stripe sends nothing. Past the grace (and when
    unpaid), FAILED_PAYMENT_POLICY "free" falls back to Free; "block" keeps the plan
    and blocks calls (calls_blocked = payment_failed) until Stripe has the payment.
    """
    subscription = customer.stripe_subscription
    plan = (
        Plan.objects.filter(stripe_price_id=price_of(subscription), stripe_price_id__gt="").first()
        if subscription
        else None
    )
    grace_until = customer.payment_grace_until
    in_grace = grace_until is not None and timezone.now() < grace_until
    # FAILED_PAYMENT_POLICY "block": past the grace, the plan stays and every call is refused until paid.
    blocked = bool(
        settings.FAILED_PAYMENT_POLICY == "block" and plan and customer.payment_failed_since and not in_grace
    )
    granted = customer.is_paying or in_grace or blocked
    if blocked:
        customer.calls_blocked = CallsBlocked.PAYMENT_FAILED
    elif customer.calls_blocked == CallsBlocked.PAYMENT_FAILED:
        customer.calls_blocked = CallsBlocked.NO  # paid (or policy changed); a spend cap is re-checked by its job
    if granted and plan:
        customer.current_period_start = moment(period_of(subscription, "start"))
        customer.current_period_end = moment(period_of(subscription, "end"))
    else:  # past_due (past the grace), unpaid, canceled, incomplete or none
        plan = Plan.objects.default()
        customer.current_period_start = customer.current_period_end = None
    if not plan.metered:
        customer.metered_since = None
        if customer.calls_blocked == CallsBlocked.SPEND_CAP:
            customer.calls_blocked = CallsBlocked.NO  # spend caps are for pay-as-you-go only
    elif customer.metered_since is None or customer.plan_id != plan.pk:
        customer.metered_since = timezone.now()  # words used on an earlier plan are not billed per word
    if customer.plan_id != plan.pk:  # by Stripe, whoever started it (Checkout, the Portal, a switch here)
        status = (subscription or {}).get("status", "none")
        change = f"{customer.plan} → {plan} (subscription: {status})"
        record(None, customer.organization, AuditEvent.Action.PLAN_CHANGED, change)
    customer.plan = plan


def price_of(subscription: dict) -> str | None:
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        return None
    item = items[0]
    return (item.get("price") or {}).get("id") or (item.get("plan") or {}).get("id")


def customer_id_of(obj: dict) -> str | None:
    if obj.get("object") == "customer":
        return obj.get("id")
    customer = obj.get("customer")
    return customer.get("id") if isinstance(customer, dict) else customer

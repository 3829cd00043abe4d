"""Plan changes: Stripe Checkout for a first subscription, a prorated switch, the Customer Portal."""

import stripe

from billing.customers import customer_id_of, sync
from billing.models import Customer, Plan


def checkout_url(customer: Customer, plan: Plan, success_url: str, cancel_url: str) -> str:
    """Stripe Checkout for the first paid subscription."""
    session = stripe.checkout.Session.create(
        mode="subscription",
        customer=customer.stripe_id,
        line_items=[{"price": plan.stripe_price_id, "quantity": 1}],
        success_url=success_url,
        cancel_url=cancel_url,
        client_reference_id=str(customer.organization_id),
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

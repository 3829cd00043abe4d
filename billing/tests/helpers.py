"""Helpers of the billing tests, against localstripe (fixtures stay in stripe_fixtures.py)."""

import stripe

from billing.customers import ensure_stripe_customer, sync
from billing.models import Customer, Plan


def subscribe(customer: Customer, price: str) -> dict:
    """A card and a subscription added in Stripe (as Checkout would)."""
    card = stripe.Token.create(card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"})
    stripe.Customer.create_source(customer.stripe_id, source=card.id)
    return stripe.Subscription.create(customer=customer.stripe_id, items=[{"plan": price}]).to_dict()


def failing_payment(user) -> Customer:
    """A Starter subscriber whose card now declines and who owes an invoice: past_due.

    localstripe charges a new invoice at once when the price's interval changes,
    so the customer moves to a yearly Starter price (Starter's price here).
    """
    customer = ensure_stripe_customer(user.default_organization())
    subscription = subscribe(customer, "price_starter_monthly")
    stripe.Plan.create(id="price_starter_yearly", amount=29000, currency="usd", interval="year", product={"name": "y"})
    Plan.objects.filter(slug="starter").update(stripe_price_id="price_starter_yearly")
    card = stripe.Token.create(card={"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"})
    source = stripe.Customer.create_source(customer.stripe_id, source=card.id)
    stripe.Customer.modify(customer.stripe_id, default_source=source.id)
    item = subscription["items"]["data"][0]["id"]
    stripe.Subscription.modify(subscription["id"], items=[{"id": item, "plan": "price_starter_yearly"}])
    return sync(customer)


def open_invoice(customer: Customer) -> dict:
    return next(invoice for invoice in customer.stripe_invoices if invoice["status"] == "open")

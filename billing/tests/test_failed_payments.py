"""A subscription whose payment failed (past_due, unpaid): the plan it keeps, and what the customer is told."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from billing.customers import apply_subscription, ensure_stripe_customer, sync
from billing.models import Customer, Plan
from billing.tests.helpers import failing_payment, open_invoice, subscribe


def failed_days_ago(customer: Customer, days: int) -> None:
    """The cached open invoice as if its payment had failed `days` ago; the plan re-derived from it."""
    invoices = customer.stripe_invoices
    invoice = next(invoice for invoice in invoices if invoice["status"] == "open")
    invoice["created"] = invoice["status_transitions"]["finalized_at"] = int(
        (datetime.now(UTC) - timedelta(days=days)).timestamp()
    )
    apply_subscription(customer)
    customer.save()


def test_by_default_a_failed_payment_falls_back_to_free_and_says_why_and_how_to_fix_it(
    customer_client, stripe_server, customer
):
    billing = failing_payment(customer)
    assert billing.subscription_status == "past_due" and billing.plan == Plan.objects.default()
    failed = datetime.fromtimestamp(open_invoice(billing)["status_transitions"]["finalized_at"], UTC)
    assert billing.payment_failed_since == failed and billing.payment_grace_until is None
    for page in ("billing", "dashboard"):
        html = customer_client.get(reverse(page)).content.decode()
        assert "Your payment failed" in html and f'on <time datetime="{failed.isoformat()}">' in html
        assert "Until the invoice is paid, the Free plan's limits apply." in html
        assert f'<form method="post" action="{reverse("billing_portal")}">' in html and "Fix the payment" in html


def test_the_fix_leads_to_the_customer_portal(customer_client, stripe_server, customer):
    failing_payment(customer)
    response = customer_client.post(reverse("billing_portal"))
    assert response.status_code == 302 and "/portal/" in response["Location"]


@pytest.mark.parametrize("days_since_failure, keeps_plan", [(0, True), (2, True), (4, False)])
def test_during_the_grace_a_past_due_customer_keeps_the_paid_plan(
    customer_client, stripe_server, customer, settings, days_since_failure, keeps_plan
):
    settings.FAILED_PAYMENT_GRACE_DAYS = 3
    billing = failing_payment(customer)
    failed_days_ago(billing, days_since_failure)
    billing = Customer.objects.get(pk=billing.pk)
    starter = Plan.objects.get(slug="starter")
    assert billing.plan == (starter if keeps_plan else Plan.objects.default())
    assert billing.payment_grace_until == billing.payment_failed_since + timedelta(days=3)
    html = customer_client.get(reverse("dashboard")).content.decode()
    if keeps_plan:
        assert billing.current_period_end is not None
        assert f'You keep the Starter plan until <time datetime="{billing.payment_grace_until.isoformat()}">' in html
    else:
        assert "Until the invoice is paid, the Free plan's limits apply." in html


def test_an_unpaid_subscription_falls_back_to_free_whatever_the_grace(
    customer_client, stripe_server, customer, settings
):
    settings.FAILED_PAYMENT_GRACE_DAYS = 3
    billing = failing_payment(customer)
    assert billing.plan.slug == "starter"
    billing.stripe_subscription["status"] = "unpaid"  # Stripe's retries are over
    apply_subscription(billing)
    billing.save()
    assert billing.plan == Plan.objects.default() and billing.payment_grace_until is None
    html = customer_client.get(reverse("billing")).content.decode()
    assert "and has stopped retrying" in html and "the Free plan's limits apply" in html


def test_the_failure_dates_from_the_oldest_invoice_still_owed(stripe_server, customer):
    billing = failing_payment(customer)
    owed = open_invoice(billing)
    older = {**owed, "id": "in_older", "created": owed["created"] - 86400, "status_transitions": {}}
    billing.stripe_invoices.append(older)
    assert billing.payment_failed_since == datetime.fromtimestamp(older["created"], UTC)
    billing.stripe_invoices = [invoice for invoice in billing.stripe_invoices if invoice["status"] != "open"]
    period_start = billing.stripe_subscription["current_period_start"]  # none in the cache: when the period began
    assert billing.payment_failed_since == datetime.fromtimestamp(period_start, UTC)


def test_a_paying_customer_is_told_nothing(customer_client, stripe_server, customer):
    billing = ensure_stripe_customer(customer.default_organization())
    subscribe(billing, "price_starter_monthly")
    sync(billing)
    assert billing.payment_failed_since is None
    assert "Your payment failed" not in customer_client.get(reverse("dashboard")).content.decode()


def test_policy_block_keeps_the_plan_blocks_calls_after_the_grace_and_says_so(
    customer_client, stripe_server, customer, settings
):
    settings.FAILED_PAYMENT_POLICY = "block"
    settings.FAILED_PAYMENT_GRACE_DAYS = 3
    billing = failing_payment(customer)
    failed_days_ago(billing, 1)  # in the grace: the plan, no block
    billing = Customer.objects.get(pk=billing.pk)
    assert billing.plan.slug == "starter" and billing.calls_blocked == ""
    failed_days_ago(billing, 4)  # past it: the plan stays, calls are blocked
    billing = Customer.objects.get(pk=billing.pk)
    assert billing.plan.slug == "starter" and billing.calls_blocked == "payment_failed"
    for page in ("billing", "dashboard"):
        html = customer_client.get(reverse(page)).content.decode()
        assert "Your API calls are blocked" in html and "Fix the payment" in html

    billing.stripe_subscription["status"] = "active"  # paid
    apply_subscription(billing)
    billing.save()
    assert Customer.objects.get(pk=billing.pk).calls_blocked == ""
    assert "Your API calls are blocked" not in customer_client.get(reverse("billing")).content.decode()


def test_policy_block_blocks_an_unpaid_subscription(stripe_server, customer, settings):
    settings.FAILED_PAYMENT_POLICY = "block"
    billing = failing_payment(customer)  # no grace: blocked at once
    assert billing.plan.slug == "starter" and billing.calls_blocked == "payment_failed"
    billing.stripe_subscription["status"] = "unpaid"
    apply_subscription(billing)
    assert billing.calls_blocked == "payment_failed"
    billing.stripe_subscription["status"] = "canceled"  # no failed payment any more: Free, unblocked
    apply_subscription(billing)
    assert billing.plan == Plan.objects.default() and billing.calls_blocked == ""


def test_policy_free_never_blocks(stripe_server, customer):
    billing = failing_payment(customer)
    assert billing.plan == Plan.objects.default() and billing.calls_blocked == ""

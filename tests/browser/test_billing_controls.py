"""The customer's billing controls in Chromium: quota alerts set on the Billing page and obeyed by the
scheduled job, the cached invoices listed, a failed payment explained with the way to fix it."""

import io
import json
import re
import time
import urllib.request
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import ApiToken
from billing.customers import customer_of
from billing.models import Customer, Plan, QuotaAlert
from billing.tests.helpers import failing_payment, open_invoice
from tests.browser.helpers import call_api, forward_auth_status, log_in, sign_up
from usage.queries import period_use

# Transactional (a live server): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

THRESHOLDS = "Alert me at (% of the quota)"


def calls_of_the_period(customer) -> int:
    start = Customer.objects.get(organization=customer.default_organization()).billing_period(timezone.now())[0]
    rows = period_use({customer.default_organization().pk: start}).rows()
    return rows[0]["calls"] if rows else 0


def call_until_recorded(base_url: str, secret: str, customer, count: int) -> None:
    """`count` calls through forward-auth, then the wait until its flusher has stored them (about a second)."""
    before = calls_of_the_period(customer)
    for _ in range(count):
        call_api(base_url, secret, "/v1/en/entities")
    for _ in range(50):
        if calls_of_the_period(customer) == before + count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{before + count} calls not in the store within 5 s: {calls_of_the_period(customer)}")


def send_quota_alerts() -> None:
    call_command("send_quota_alerts", stdout=io.StringIO())


def test_thresholds_set_on_the_billing_page_alert_by_e_mail_and_on_the_dashboard(
    page, live_server, customer, usage_store
):
    Plan.objects.filter(is_default=True).update(per_month=10)  # Free: 10 calls per period
    log_in(page, customer.email)
    page.goto("/billing/")
    field = page.get_by_label(THRESHOLDS)
    expect(field).to_have_value("80, 100")  # the default

    for bad in ["0", "150", "eighty"]:
        field.fill(bad)
        page.get_by_role("button", name="Save alerts").click()
        expect(page.get_by_text("Each threshold is a whole percentage from 1 to 100.")).to_be_visible()
        expect(page.get_by_label(THRESHOLDS)).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_text("Your quota alerts are saved.")).to_have_count(0)
        assert Customer.objects.get(organization=customer.default_organization()).alert_thresholds == [80, 100], bad
        field = page.get_by_label(THRESHOLDS)

    field.fill("90, 50%")
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_text("Your quota alerts are saved.")).to_be_visible()
    expect(page).to_have_url("/billing/")
    expect(page.get_by_label(THRESHOLDS)).to_have_value("50, 90")
    expect(page.get_by_text("Each threshold is a whole percentage")).to_have_count(0)
    assert Customer.objects.get(organization=customer.default_organization()).alert_thresholds == [50, 90]

    secret = ApiToken.issue(customer.default_organization(), "production")[1]
    call_until_recorded(live_server.url, secret, customer, 4)  # 40%: below both thresholds
    send_quota_alerts()
    assert mail.outbox == [] and not QuotaAlert.objects.exists()
    page.goto("/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("heading", name="Quota alerts this period")).to_have_count(0)

    call_until_recorded(live_server.url, secret, customer, 1)  # 50%: the customer's own threshold, not 80's
    send_quota_alerts()
    send_quota_alerts()  # once per threshold and period
    assert [message.subject for message in mail.outbox] == ["You have used 50% of your quota of calls"]
    assert mail.outbox[0].to == [customer.email]
    assert "5 calls of your quota of 10 calls" in mail.outbox[0].body

    page.goto("/")
    alerts = page.get_by_role("heading", name="Quota alerts this period").locator("xpath=..")
    expect(alerts).to_be_visible()
    expect(alerts.get_by_role("listitem")).to_have_count(1)
    expect(alerts.get_by_role("listitem")).to_contain_text("50% of your calls quota reached: 5 of 10")
    expect(alerts.get_by_role("listitem")).to_contain_text("(e-mailed)")
    alerts.get_by_role("link", name="Change your alert thresholds").click()
    expect(page).to_have_url("/billing/")
    expect(page.get_by_label(THRESHOLDS)).to_have_value("50, 90")


def test_the_invoices_of_a_subscription_are_listed_with_amount_and_status(page, stripe_server):
    sign_up(page)
    page.goto("/billing/")
    expect(page.get_by_text("No invoices yet.")).to_be_visible()
    page.get_by_role("button", name="Upgrade to Pro").click()  # Stripe Checkout pays the first invoice
    expect(page.get_by_role("heading", name="Your plan: Pro")).to_be_visible()

    invoices = Customer.objects.get(organization__members__email="ada@example.com").stripe_invoices
    assert len(invoices) == 1
    invoice = invoices[0]
    created = datetime.fromtimestamp(invoice["created"], UTC)
    invoices_card = page.get_by_role("heading", name="Invoices").locator("xpath=..")
    expect(invoices_card.get_by_text("No invoices yet.")).to_have_count(0)
    rows = invoices_card.get_by_role("row")
    expect(rows).to_have_count(2)  # the header and the invoice
    expect(rows.nth(1).get_by_role("cell")).to_have_text(
        [
            f"{created.day} {created:%b %Y}",
            invoice.get("number") or invoice["id"],
            "199.00",
            "USD",
            "Paid",
            "In the portal",  # localstripe gives no hosted page
        ]
    )


def test_a_failed_payment_is_explained_with_the_portal_to_fix_it(page, stripe_server, customer):
    billing = failing_payment(customer)
    assert billing.subscription_status == "past_due"
    failed = datetime.fromtimestamp(open_invoice(billing)["status_transitions"]["finalized_at"], UTC)
    portal_visits = []
    page.on("request", lambda request: "/portal/" in request.url and portal_visits.append(request.url))

    log_in(page, customer.email)  # the dashboard
    for where in ["/", "/billing/"]:
        page.goto(where)
        notice = page.get_by_role("region", name="Your payment failed")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text(f"Stripe could not charge your payment method on {failed.day} {failed:%B %Y}")
        expect(notice).to_contain_text("Until the invoice is paid, the Free plan's limits apply.")
        expect(notice.locator("time")).to_have_attribute("datetime", failed.isoformat())
        fix = notice.get_by_role("button", name="Fix the payment")
        expect(fix).to_be_enabled()
        expect(notice.locator("form")).to_have_attribute("action", "/billing/portal/")
    expect(page.get_by_role("heading", name="Your plan: Free")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Subscription: past_due"))).to_be_visible()

    fix.click()  # to the Customer Portal, which comes back to the Billing page
    expect(page).to_have_url("/billing/")
    assert f"{stripe_server.url}/portal/{billing.stripe_id}" in portal_visits  # Stripe's Portal, for this customer


def test_with_the_block_policy_a_failed_payment_blocks_calls_and_says_so(
    page, live_server, stripe_server, customer, settings
):
    settings.FAILED_PAYMENT_POLICY = "block"  # no grace: blocked at once, the plan kept
    billing = failing_payment(customer)
    assert billing.calls_blocked == "payment_failed" and billing.plan.slug != "free"
    secret = ApiToken.issue(customer.default_organization(), "production")[1]
    problem = forward_auth_status(live_server.url, secret, "/v1/en/entities", 402)
    assert problem["title"] == "Payment failed" and "Customer Portal" in problem["detail"]

    log_in(page, customer.email)  # the dashboard
    notice = page.get_by_role("region", name="Your payment failed")
    expect(notice).to_contain_text("Your API calls are blocked (402 Payment failed) until the invoice is paid.")
    expect(notice.get_by_role("button", name="Fix the payment")).to_be_enabled()


def test_a_spend_cap_set_on_the_billing_page_blocks_calls_once_reached_until_raised(
    page, live_server, customer, usage_store, settings
):
    settings.USAGE_SERVICE_TOKEN = "service-token"
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg")
    )  # $0.50 a 1,000 words
    log_in(page, customer.email)
    page.goto("/billing/")
    cap = page.get_by_label("Spend cap per billing period ($)")
    for bad in ["-5", "0"]:
        cap.fill(bad)
        page.get_by_role("button", name="Save alerts").click()
        expect(page.get_by_text("A spend cap is a positive amount; leave it empty for no cap.")).to_be_visible()
        assert Customer.objects.get(organization=customer.default_organization()).spend_cap_cents is None, bad
        cap = page.get_by_label("Spend cap per billing period ($)")
    cap.fill("0.05")
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_text("Your quota alerts are saved.")).to_be_visible()
    expect(page.get_by_label("Spend cap per billing period ($)")).to_have_value("0.05")

    secret = ApiToken.issue(customer.default_organization(), "production")[1]
    request_id = call_api(live_server.url, secret, "/v1/en/summarization")["X-Request-Id"]
    report_words(live_server.url, request_id, 120)  # $0.06: over the cap
    send_quota_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == "spend_cap"
    problem = forward_auth_status(live_server.url, secret, "/v1/en/summarization", 402)
    assert problem["title"] == "Spend cap reached" and "Billing page" in problem["detail"]

    page.goto("/billing/")
    notice = page.get_by_role("region", name="Your spend cap is reached")
    expect(notice).to_contain_text("Your API calls are blocked")
    page.get_by_label("Spend cap per billing period ($)").fill("1.00")
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_text("Your quota alerts are saved.")).to_be_visible()
    send_quota_alerts()  # the scheduled job, within 5 minutes
    forward_auth_status(live_server.url, secret, "/v1/en/summarization", 200)
    page.goto("/billing/")
    expect(page.get_by_role("region", name="Your spend cap is reached")).to_have_count(0)


def report_words(base_url: str, request_id: str, words: int) -> None:
    """The NLP API's report of a call's words, then the wait until the store has merged them (about a second)."""
    request = urllib.request.Request(
        f"{base_url}/usage/quantities",
        data=json.dumps([{"request_id": request_id, "words": words, "characters": words * 5}]).encode(),
        headers={"Authorization": "Bearer service-token", "Content-Type": "application/json"},
    )
    assert urllib.request.urlopen(request, timeout=10).status == 200
    customer_id = ApiToken.objects.get().organization_id
    for _ in range(50):
        rows = period_use({customer_id: datetime(2000, 1, 1, tzinfo=UTC)}).rows()
        if rows and rows[0]["words"] == words:
            return
        time.sleep(0.1)
    raise AssertionError("the words were not in the store within 5 s")

"""A customer upgrades in the browser (Checkout and the Portal are redirects to Stripe) and the next API call gets the new limits."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import call_api, sign_up

# Transactional (a live server or a server process): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)


def test_upgrade_through_checkout_then_the_next_call_has_the_new_plan(page, live_server, stripe_server):
    sign_up(page)
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    assert call_api(live_server.url, secret, "/v1/en/entities")["X-Plan"] == "free"

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    expect(page.get_by_role("heading", name="Your plan: Free")).to_be_visible()
    page.get_by_role("button", name="Upgrade to Starter").click()  # to Stripe Checkout, which pays and comes back
    expect(page).to_have_url("/billing/")
    expect(page.get_by_text("Welcome to Starter! Your new limits apply now.")).to_be_visible()
    expect(page.get_by_role("heading", name="Your plan: Starter")).to_be_visible()

    assert call_api(live_server.url, secret, "/v1/en/entities", plan="starter")["X-Plan"] == "starter"

    page.get_by_role("button", name="Payment methods, invoices and cancellation").click()  # the Portal, and back
    expect(page).to_have_url("/billing/")

"""The customer journey end to end, in Chromium, with every part real or at its HTTP boundary.

Traefik, with the shipped deploy/traefik/ configuration (backoffice.gateway, as in
`make run`), sends each API call to the backoffice's forward-auth (the live server)
and, if allowed, to the example NLP API (uvicorn), which reports quantities and
releases its lease; localstripe (plus the fake in front of it) stands behind billing.
Screenshots of each page, desktop and mobile, go to $SCREENSHOT_DIR (default
test-artifacts/screenshots), which CI keeps.
"""

import pytest
from playwright.sync_api import expect

from accounts.models import User
from tests.browser.helpers import SCREENSHOTS, extract, reload_until, sign_up
from tests.helpers import PASSWORD

# Transactional (a live server or a server process): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-desktop.png", full_page=True)
    width = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 812})
    page.screenshot(path=SCREENSHOTS / f"{name}-mobile.png", full_page=True)
    page.set_viewport_size(width)


def test_the_customer_journey(page, browser, live_server, api, stripe_server):
    calls: list[int] = []  # statuses of every API call made
    # Sign up and create a token.
    sign_up(page, "journey@example.com")
    shoot(page, "tokens-empty")
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    shoot(page, "tokens")

    # Call the API through the gateway until the Free plan's 10 a minute are used up.
    for _ in range(50):  # a new token reaches forward-auth within a second
        status, _, body = extract(api, secret, calls)
        if status != 401:
            break
        page.wait_for_timeout(100)
    assert status == 200 and body["plan"] == "free"
    assert {"start": 0, "end": 12, "type": "PERSON", "text": "Ada Lovelace"} in body["entities"]
    statuses = [extract(api, secret, calls)[0] for _ in range(9)]
    status, headers, problem = extract(api, secret, calls)
    assert statuses == [200] * 9 and status == 429
    assert 1 <= int(headers["Retry-After"]) <= 61 and problem["window"] == "minute"
    assert headers["Ratelimit-Policy"].startswith('"minute";q=10;w=60')

    # The calls are on the Usage page and the dashboard.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    reload_until(page, "11 calls in all")
    reload_until(page, "80 words in all")  # 8 words a call, reported by the NLP API, for the 10 it answered
    shoot(page, "usage")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_text("1 refused (UTC day)")).to_be_visible()
    expect(page.get_by_text("to /v1/entities refused")).to_be_visible()
    shoot(page, "dashboard")

    # Upgrade: Checkout is a redirect to Stripe and back.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    shoot(page, "billing-free")
    page.get_by_role("button", name="Upgrade to Starter").click()
    expect(page.get_by_role("heading", name="Your plan: Starter")).to_be_visible()
    shoot(page, "billing-starter")

    # The next call passes under the new limit.
    for _ in range(50):
        status, _, body = extract(api, secret, calls)
        if status == 200:
            break
        page.wait_for_timeout(100)
    assert status == 200 and body["plan"] == "starter"

    # Write to support.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Support").click()
    page.get_by_label("Subject").fill("Higher limits")
    page.get_by_label("Message").fill("Could we get 500 calls a minute for a launch?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_text("Message sent.")).to_be_visible()
    shoot(page, "support")

    # Staff find the customer, see the same usage and answer.
    User.objects.create_superuser("boss@example.com", PASSWORD)
    staff = browser.new_context(base_url=live_server.url).new_page()
    staff.goto("/admin/login/")
    staff.get_by_label("E-mail address").fill("boss@example.com")
    staff.get_by_label("Password").fill(PASSWORD)
    staff.get_by_role("button", name="Log in").click()
    staff.goto("/admin/accounts/organization/?q=journey")  # by a member's e-mail
    staff.get_by_role("link", name="journey@example.com").click()  # the personal organization's name
    recorded = sum(1 for status in calls if status != 401)  # unknown tokens are not a customer's calls
    reload_until(staff, f"{recorded} calls.")
    shoot(staff, "admin-customer")
    staff.goto("/admin/accounts/user/?q=journey")
    staff.get_by_role("link", name="journey@example.com").click()
    expect(staff.get_by_text("Higher limits", exact=True)).to_be_visible()
    staff.goto("/staff/usage/")
    expect(staff.get_by_role("link", name="journey@example.com")).to_be_visible()
    shoot(staff, "staff-usage")
    staff.goto("/admin/accounts/supportmessage/")
    staff.get_by_role("link", name="Higher limits").click()
    staff.get_by_label("Answer").fill("Done: 500 a minute until the end of the month.")
    staff.get_by_role("button", name="Save", exact=True).click()
    expect(staff.get_by_text("was changed successfully")).to_be_visible()

    page.reload()
    expect(page.get_by_text("Done: 500 a minute until the end of the month.")).to_be_visible()
    expect(page.get_by_text("Answered")).to_be_visible()

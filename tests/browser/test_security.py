"""What the browser keeps and runs: no token secret in htmx's history cache, nothing outside the Content-Security-Policy."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken, User
from tests.browser.helpers import call_api, sign_up
from tests.helpers import PASSWORD
from usage.queries import RANGES

# Transactional (a live server or a server process): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

HISTORY_CACHE = "sessionStorage.getItem('htmx-history-cache')"


def test_a_new_token_secret_does_not_come_back_with_the_back_button(page):
    sign_up(page)
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page).to_have_url("/account/")
    page.go_back()
    expect(page).to_have_url("/tokens/")
    expect(page.get_by_role("cell", name="production")).to_be_visible()
    expect(page.get_by_text(secret)).to_have_count(0)
    assert secret not in page.evaluate("JSON.stringify({...sessionStorage})")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url("/login/")
    assert page.evaluate(HISTORY_CACHE) is None


def test_a_new_token_secret_does_not_come_back_from_the_back_forward_cache(page_with_bfcache):
    page = page_with_bfcache
    sign_up(page)
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()

    page.evaluate("window.notReloaded = true")
    page.goto("/account/")  # a full page load: the tokens page waits in the back/forward cache
    page.go_back(wait_until="commit")  # a restore fires no load event
    expect(page).to_have_url("/tokens/")
    assert page.evaluate("window.notReloaded")  # restored from the cache, as it was left
    expect(page.get_by_role("cell", name="production")).to_be_visible()
    expect(page.get_by_text(secret)).to_have_count(0)


def test_signing_in_as_someone_else_in_the_same_tab_starts_with_an_empty_history_cache(page):
    sign_up(page)
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Account").click()
    expect(page).to_have_url("/account/")
    assert page.evaluate(HISTORY_CACHE) is not None  # the tokens page, kept for the back button

    page.context.clear_cookies()  # the session ended without a logout
    nav.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url("/login/?next=/")
    assert page.evaluate(HISTORY_CACHE) is None


@pytest.fixture
def violations(page) -> list[str]:
    """Content-Security-Policy violations in any page the browser shows, as the event and the console report them."""
    found = []
    page.expose_function("reportViolation", lambda violation: found.append(violation))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " reportViolation(`${e.documentURI}: ${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`))"
    )

    def on_console(message):
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    return found


def test_no_page_needs_more_than_the_content_security_policy_allows(page, violations, live_server, staff_user):
    sign_up(page)
    customer = User.objects.get(email="ada@example.com")
    secret = ApiToken.issue(customer.default_organization(), "production")[1]
    for uri in ["/v1/en/entities", "/v1/en/summarization"]:  # charts with two endpoints, hence a legend
        call_api(live_server.url, secret, uri)
    for _ in range(40):  # the flusher writes within a second
        page.goto("/usage/")
        if page.get_by_text("2 calls in all").count():
            break
        page.wait_for_timeout(250)
    expect(page.get_by_text("2 calls in all")).to_be_visible()

    customer_pages = [
        "/",
        "/tokens/",
        *[f"/usage/?range={key}" for key in RANGES],
        "/billing/",
        "/support/",
        "/account/",
        "/account/password/",
    ]
    for url in customer_pages:
        visit(page, url)
    nav = page.get_by_role("navigation", name="Main")
    for name in [
        "Dashboard",
        "API tokens",
        "Billing",
        "Support",
        "Account",
        "Usage",
    ]:  # the same pages swapped in by htmx
        nav.get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
    page.get_by_role("link", name="30 days").click()
    expect(page.get_by_role("heading", name="Last 30 days")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    page.get_by_label("E-mail address").fill(staff_user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url("/")
    staff_pages = [
        "/staff/usage/",
        f"/staff/usage/{customer.default_organization().pk}/",
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/organization/{customer.default_organization().pk}/change/",  # with the customer's usage chart
    ]
    for url in staff_pages:
        visit(page, url)

    assert violations == []


def visit(page, url: str) -> None:
    """Load the page in full, under the policy (else not seeing a violation would prove nothing)."""
    response = page.goto(url)
    assert "script-src 'self'" in response.headers.get("content-security-policy", ""), url
    expect(page.get_by_role("heading", level=1)).to_be_visible()

"""The htmx shell in a real browser: URL and content stay consistent through navigation."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken, User
from tests.browser.helpers import call_api, log_in, sign_up
from tests.helpers import authenticates

# Transactional (a live server or a server process): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_create_a_token_navigate_reload_and_go_back(page, transactional_db):
    sign_up(page)
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    assert authenticates(secret) and ApiToken.objects.get(prefix=secret[:12]).name == "production"

    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Account").click()
    expect(page).to_have_url("/account/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    expect(page).to_have_title("Account · NLP API")
    expect(nav.get_by_role("link", name="Account")).to_have_attribute("aria-current", "page")

    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    assert page.locator("nav").count() == 1 and page.locator("main").count() == 1  # no page in a page

    nav.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url("/")
    page.go_back()
    expect(page).to_have_url("/account/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    page.go_back()
    expect(page).to_have_url("/tokens/")
    expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")
    expect(page.get_by_role("cell", name="production")).to_be_visible()

    page.reload()  # the secret was shown once, never again
    expect(page.get_by_role("cell", name="production")).to_be_visible()
    expect(page.get_by_text(secret)).to_have_count(0)


def test_revoking_a_token_updates_the_list_in_place(page, transactional_db):
    sign_up(page)
    ApiToken.issue(User.objects.get().default_organization(), "laptop")
    page.reload()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked")).to_be_visible()
    expect(page).to_have_url("/tokens/")
    assert not ApiToken.objects.get().is_active


def test_an_error_during_a_swap_is_shown_to_the_user(page, transactional_db):
    sign_up(page)
    ApiToken.issue(User.objects.get().default_organization(), "laptop")
    page.reload()
    ApiToken.objects.get().revoke()  # revoked elsewhere: the button now gets a 404
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("alert")).to_contain_text("404")


# A link in the content, as a page's own links are (hx-get, hx-target #content, hx-push-url).
ADD_LINK = """url => {
    const link = Object.assign(document.createElement("a"), {href: url, textContent: url});
    for (const [name, value] of [["hx-get", url], ["hx-target", "#content"], ["hx-push-url", "true"]]) link.setAttribute(name, value);
    document.getElementById("content").append(link);
    htmx.process(link);
}"""


@pytest.mark.urls("backoffice.tests.test_error_pages")  # the site, plus /broken/, which fails (500)
def test_an_error_answered_to_htmx_is_an_alert_not_a_page_in_the_page(page):
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    sign_up(page)
    page.wait_for_load_state()  # htmx, which makes the links below, is loaded
    expected = {
        "/broken/": "Something went wrong (500): An error on our side stopped this request. Please try again in a few minutes.",
        "/usage/?range=nope": "Bad request (400): Unknown range; use one of 24h, 7d, 30d, 12m.",
        "/no-such-page/": "Not found (404): What you asked for does not exist, or no longer does.",
    }
    for url, alert in expected.items():
        page.evaluate(ADD_LINK, url)
        page.get_by_role("link", name=url).click()
        expect(page.get_by_role("alert")).to_have_text(alert)
        expect(page).to_have_url("/tokens/")  # no history entry for a page that failed
        expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")  # the page stays as it was
        assert page.locator("nav[aria-label=Main]").count() == 1
    assert errors == []


def test_a_session_that_expired_leads_to_the_login_page(page, transactional_db):
    sign_up(page)
    page.context.clear_cookies()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page).to_have_url("/login/?next=/account/")
    assert page.locator("nav").count() == 1  # the whole page, not a login form inside the old one
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


# A mark on the current document: gone once the browser has loaded another one.
MARK_DOCUMENT = "window.markedDocument = true"
DOCUMENT_MARKED = "window.markedDocument === true"


def test_back_to_a_page_not_in_the_history_cache_after_the_session_expired_leads_to_the_login_page(page):
    sign_up(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page).to_have_url("/account/")
    page.evaluate("sessionStorage.removeItem('htmx-history-cache')")  # as if it had been evicted
    page.context.clear_cookies()
    page.go_back()
    expect(page).to_have_url("/login/?next=/tokens/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


def test_a_staff_session_that_expired_leads_to_the_admin_login_page(page, staff_user):
    log_in(page, staff_user.email)
    page.context.clear_cookies()
    page.evaluate(MARK_DOCUMENT)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage overview").click()
    expect(page).to_have_url("/admin/login/?next=/staff/usage/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.evaluate(DOCUMENT_MARKED) is False  # a page load, not the admin's login swapped into ours


@pytest.mark.parametrize("who", ["customer", "staff"])
def test_switching_the_range_after_the_session_expired_leads_to_the_login_page(page, customer, staff_user, who):
    if who == "staff":
        log_in(page, staff_user.email)
        page.goto(f"/staff/usage/{customer.default_organization().pk}/")
        login_url = f"/admin/login/?next=/staff/usage/{customer.default_organization().pk}/%3Frange%3D30d"
    else:
        log_in(page, customer.email)
        page.goto("/usage/")
        login_url = "/login/?next=/usage/%3Frange%3D30d"
    page.context.clear_cookies()
    page.evaluate(MARK_DOCUMENT)
    page.get_by_role("link", name="30 days").click()
    expect(page).to_have_url(login_url)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.evaluate(DOCUMENT_MARKED) is False  # a page load, not the login page swapped into the report


def test_back_and_forward_raise_no_javascript_error(page):
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    sign_up(page)
    nav = page.get_by_role("navigation", name="Main")
    for name in ["Account", "Dashboard"]:
        nav.get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
    for step, heading in [
        (page.go_back, "Account"),
        (page.go_back, "API tokens"),
        (page.go_forward, "Account"),
        (page.go_forward, "Dashboard"),
    ]:
        step()
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page).to_have_title(f"{heading} · NLP API")
        expect(nav.get_by_role("link", name=heading)).to_have_attribute("aria-current", "page")
    assert errors == []


def test_calls_made_with_a_new_token_show_up_on_the_usage_page(page, live_server, transactional_db):
    sign_up(page)
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    for uri in ["/v1/en/entities", "/v1/en/entities", "/v1/en/summarization"]:
        call_api(live_server.url, secret, uri)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    expect(page).to_have_url("/usage/")
    for _ in range(40):  # the flusher writes within a second
        if "3 calls in all" in page.content():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.get_by_text("3 calls in all")).to_be_visible()
    expect(page.locator(".legend li", has_text="/v1/en/summarization").first).to_be_visible()

    page.get_by_role("link", name="30 days").click()
    expect(page).to_have_url("/usage/?range=30d")
    expect(page.get_by_role("heading", name="Last 30 days")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    page.reload()
    expect(page.get_by_role("heading", name="Last 30 days")).to_be_visible()
    page.go_back()
    expect(page).to_have_url("/usage/")
    expect(page.get_by_role("heading", name="Last 7 days")).to_be_visible()

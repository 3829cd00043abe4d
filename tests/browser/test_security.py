"""What the browser keeps and runs: no token secret in htmx's history cache, nothing outside the Content-Security-Policy."""

import pytest
from playwright.sync_api import expect

from tests.browser.test_shell import sign_up

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

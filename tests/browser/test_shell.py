"""The htmx shell in a real browser: URL and content stay consistent through navigation."""

from playwright.sync_api import expect

from accounts.models import ApiToken, User
from conftest import PASSWORD


def sign_up(page, email="ada@example.com"):
    page.goto("/signup/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url("/tokens/")


def test_sign_up_create_a_token_navigate_reload_and_go_back(page, transactional_db):
    sign_up(page)
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    assert ApiToken.objects.authenticate(secret).name == "production"

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
    ApiToken.issue(User.objects.get(), "laptop")
    page.reload()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked")).to_be_visible()
    expect(page).to_have_url("/tokens/")
    assert not ApiToken.objects.get().is_active


def test_an_error_during_a_swap_is_shown_to_the_user(page, transactional_db):
    sign_up(page)
    ApiToken.issue(User.objects.get(), "laptop")
    page.reload()
    ApiToken.objects.get().revoke()  # revoked elsewhere: the button now gets a 404
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("alert")).to_contain_text("404")


def test_a_session_that_expired_leads_to_the_login_page(page, transactional_db):
    sign_up(page)
    page.context.clear_cookies()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page).to_have_url("/login/?next=/account/")
    assert page.locator("nav").count() == 1  # the whole page, not a login form inside the old one
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")

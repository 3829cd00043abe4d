"""Every page on every path, in Chromium, with long and realistic data, at 375 px and at desktop width.

A customer and a staff user walk the app: every page reached by htmx navigation,
then reloaded, the whole way back and forward again through the history, and the
login page reached when the session has expired. At each step the URL, the title
and the heading match, there is exactly one layout (no page swapped into a page),
nothing scrolls sideways, no JavaScript error was raised or logged, and axe-core
finds no accessibility violation. Screenshots of each page go to $SCREENSHOT_DIR.
"""

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.core import mail
from django.utils import timezone
from django.utils.http import urlsafe_base64_encode
from playwright.sync_api import expect

from accounts.models import ApiToken, SupportMessage, User
from billing.models import Customer, Plan
from tests.browser.helpers import SCREENSHOTS
from tests.helpers import PASSWORD
from usage import forward_auth
from usage.models import ApiCall

# Transactional (a live server): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"mobile": {"width": 375, "height": 812}, "desktop": {"width": 1280, "height": 900}}

# Long data as customers bring it: words and addresses with no space to break at (the token's name is as long as allowed).
CUSTOMER_EMAIL = "maximiliane.oberhollenzer-featherstonehaugh.accounts-payable@subsidiary-holdings.example.com"
TOKEN_NAME = "eu_west_1_production_kubernetes_cluster_nightly_summarization_batch_pipeline_worker_pool_replica_007"
LONG_URL = (
    "https://docs.example-customer.com/integrations/nlp-api/v1/entities/troubleshooting"
    "?request_id=7f3c9a1e5b2d4c6a8e0f1a3b5c7d9e1f&text=Ada%20Lovelace%20was%20born%20in%20London"
)
ENDPOINTS = ["/v1/en/entities", "/v1/en/summarization", "/v1/multilingual/named-entity-recognition-and-linking"]
STAFF_EMAIL = "operations@example.com"


@pytest.fixture
def customer(settings, usage_store) -> User:
    """A customer with a long e-mail address, tokens, support messages, a paid plan and a year of calls."""
    settings.STRIPE_SECRET_KEY = "sk_test_walk"  # billing is on; no page walked here calls Stripe
    user = User.objects.create_user(CUSTOMER_EMAIL, PASSWORD)
    organization = user.default_organization()
    now = timezone.now()
    ApiToken.issue(organization, TOKEN_NAME, created_by=user)
    used, _ = ApiToken.issue(organization, "production", created_by=user)
    ApiToken.objects.filter(pk=used.pk).update(last_used=now)
    ApiToken.issue(organization, "laptop", created_by=user)[0].revoke()
    SupportMessage.objects.create(
        user=user, subject="Entities missing", message=f"The call documented at {LONG_URL} returns no entities."
    )
    SupportMessage.objects.create(
        user=user,
        subject="Higher limits",
        message="Could we get 500 calls a minute?",
        answer="Done until the end of the month.",
        status=SupportMessage.Status.ANSWERED,
        answered_at=now,
    )
    period_end = now + timedelta(days=20)
    Customer.objects.create(  # a paying customer, as the last Stripe sync left it
        organization=organization,
        plan=Plan.objects.get(slug="starter"),
        stripe_id="cus_walk",
        current_period_end=period_end,
        stripe_subscription={"id": "sub_walk", "status": "active"},
        stripe_invoices=[
            {
                "id": "in_walk",
                "number": "7F3C9A1E-0001",
                "created": int((now - timedelta(days=10)).timestamp()),
                "amount_due": 2900,
                "currency": "usd",
                "status": "paid",
                "hosted_invoice_url": "https://invoice.stripe.com/i/acct_walk/test_walk",
            }
        ],
        stripe_upcoming_invoice={
            "amount_due": 2900,
            "currency": "usd",
            "next_payment_attempt": int(period_end.timestamp()),
        },
    )
    every_5_hours_for_a_year, every_6_minutes_today = range(0, 24 * 365, 5), (tenths / 10 for tenths in range(240))
    calls = [
        ApiCall(
            time=now - timedelta(hours=hours),
            account_id=organization.pk,
            endpoint=ENDPOINTS[i % 3],
            method="POST",
            status=429 if i % 7 == 0 else 200,
            words=157 * (i % 5),
            characters=1_093 * (i % 3),
            request_id=f"walk-{i}",
        )
        for i, hours in enumerate([*every_5_hours_for_a_year, *every_6_minutes_today])
    ]
    ApiCall.objects.bulk_create(calls)  # the aggregates follow (triggers or continuous aggregates)
    return user


@pytest.fixture
def staff(customer) -> User:
    return User.objects.create_superuser(STAFF_EMAIL, PASSWORD)


@pytest.fixture
def walker(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.add_init_script(path=AXE)  # in every document, under the page's Content-Security-Policy
    walker = Walker(context.new_page())
    yield walker
    context.close()
    forward_auth.stop_service()  # started by calls to the live server; its threads use this test's database


class Walker:
    """A tab that checks each step of a walk at each width, and remembers the steps the history holds."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.history: list[tuple[str, str]] = []  # (URL, heading) of each history entry, the current one last
        self.checked: set[tuple[str, str]] = set()  # (URL, width) axe has checked
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("console", self.on_console)

    def on_console(self, message) -> None:
        # Not a script's error: Chromium logs an error page's own status, and the 404 for /favicon.ico
        # that Django admin's pages cause (they name no icon; ours name an empty one).
        source = message.location["url"]
        if message.type == "error" and source != self.page.url and not source.endswith("/favicon.ico"):
            self.errors.append(f"{self.page.url}: {message.text} ({source})")

    def at(self, url: str, heading: str | None, title: str | None = None) -> None:
        """The page shows `url` with this heading and title, in one layout, fitting its width, without errors or violations.

        No heading: a page of Django admin's (its login), whose structure and accessibility are not ours.
        """
        page = self.page
        expect(page).to_have_url(re.compile(re.escape(url) + "$"))
        page.wait_for_load_state()  # a full-page navigation (to a login page) has its URL before its body
        if heading:
            expect(page.locator("h1")).to_have_text(heading)
        expect(page).to_have_title(title or f"{heading} · NLP API")
        expect(page.locator(".htmx-request, .htmx-settling, .htmx-swapping")).to_have_count(0)
        assert not self.errors, f"{url}: {self.errors}"
        for width, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)
            layout = page.evaluate(
                """() => ({
                    headers: document.querySelectorAll("header").length,
                    mains: document.querySelectorAll("main").length,
                    headings: document.querySelectorAll("h1").length,
                    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
                })"""
            )
            assert layout == {"headers": 1, "mains": 1, "headings": 1 if heading else 0, "overflow": 0}, (
                f"{width} {url}: {layout}"
            )
            if (
                heading and (url, width) not in self.checked
            ):  # once a page: reloads and history restores render the same
                self.checked.add((url, width))
                violations = page.evaluate(
                    """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(
                        v => `${v.id}: ${v.help} (${v.nodes.map(node => node.target.join(" ")).join(", ")})`)"""
                )
                assert not violations, f"{width} {url}: {violations}"

    def visit(self, url: str, heading: str, name: str) -> None:
        """Check the page reached, screenshot it at each width, reload it and check it again."""
        self.at(url, heading)
        self.history.append((url, heading))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for width, viewport in VIEWPORTS.items():
            self.page.set_viewport_size(viewport)
            self.page.screenshot(path=SCREENSHOTS / f"walk-{name}-{width}.png", full_page=True)
        self.page.reload()
        self.at(url, heading)

    def nav(self, link: str, url: str, heading: str, name: str) -> None:
        """Through the main navigation (htmx)."""
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=link, exact=True).click()
        self.visit(url, heading, name)

    def back_and_forth(self) -> None:
        """Back through every page of the history, then forward again."""
        for url, heading in reversed(self.history[:-1]):
            self.page.go_back()
            self.at(url, heading)
        for url, heading in self.history[1:]:
            self.page.go_forward()
            self.at(url, heading)

    def log_in(self, email: str) -> None:
        self.page.get_by_label("E-mail address").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()


def test_a_customer_walks_every_page(walker, customer):
    page = walker.page
    page.goto("/login/")
    walker.visit("/login/", "Log in", "login")
    walker.nav("Sign up", "/signup/", "Create your account", "signup")
    page.go_back()
    walker.at("/login/", "Log in")

    # A forgotten password, by e-mail.
    page.get_by_role("link", name="Forgot your password?").click()
    walker.at("/password-reset/", "Reset your password")
    page.get_by_label("E-mail address").fill(CUSTOMER_EMAIL)
    page.get_by_role("button", name="Send reset link").click()
    walker.at("/password-reset/sent/", "Check your e-mail")
    page.goto(urlsplit(re.search(r"https?://\S+", mail.outbox[-1].body)[0]).path)
    walker.at(
        f"/password-reset/{urlsafe_base64_encode(str(customer.pk).encode())}/set-password/", "Choose a new password"
    )
    page.get_by_label("New password:", exact=True).fill(PASSWORD)
    page.get_by_label("New password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    walker.at("/password-reset/done/", "Password set")
    page.get_by_role("link", name="Log in").last.click()
    walker.log_in(CUSTOMER_EMAIL)

    # Every page of the main navigation, then the ones linked from them.
    walker.history.clear()
    walker.visit("/", "Dashboard", "dashboard")
    walker.nav("API tokens", "/tokens/", "API tokens", "tokens")
    expect(page.get_by_role("cell", name=TOKEN_NAME)).to_be_visible()
    expect(page.get_by_text("just now")).to_be_visible()  # last used a moment ago
    walker.nav("Usage", "/usage/", "Usage", "usage")
    for label, key in [("24 hours", "24h"), ("30 days", "30d"), ("12 months", "12m")]:
        page.get_by_role("navigation", name="Time range").get_by_role("link", name=label).click()
        walker.visit(f"/usage/?range={key}", "Usage", f"usage-{key}")
    walker.nav("Billing", "/billing/", "Billing", "billing")
    walker.nav(CUSTOMER_EMAIL, "/organization/", CUSTOMER_EMAIL, "organization")  # named by its owner's e-mail
    page.get_by_role("link", name="Audit log").click()
    walker.visit("/organization/audit/", f"Audit log of {CUSTOMER_EMAIL}", "audit-log")
    walker.nav("Switch", "/organizations/", "Organizations", "organizations")
    walker.nav("Support", "/support/", "Support", "support")
    walker.nav("Account", "/account/", "Account", "account")
    page.get_by_role("link", name="Change password").click()
    walker.visit("/account/password/", "Change password", "password-change")
    walker.back_and_forth()

    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password:", exact=True).fill(PASSWORD)
    page.get_by_label("New password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Change password").click()
    walker.visit("/account/password/done/", "Password changed", "password-changed")
    page.goto("/billing/plans/pro/confirm/")
    walker.visit("/billing/plans/pro/confirm/", "Switch to Pro", "billing-confirm")
    page.goto("/no-such-page/")
    walker.visit("/no-such-page/", "Not found", "not-found")

    # The session expires: the next click, a page or a range, leads to the whole login page.
    page.goto("/usage/")
    page.context.clear_cookies()
    page.get_by_role("navigation", name="Time range").get_by_role("link", name="30 days").click()
    walker.at(f"/login/?next={quote('/usage/?range=30d', safe='/')}", "Log in")
    walker.log_in(CUSTOMER_EMAIL)
    walker.at("/usage/?range=30d", "Usage")
    page.context.clear_cookies()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account", exact=True).click()
    walker.at("/login/?next=/account/", "Log in")


def test_staff_walk_their_pages(walker, staff, customer):
    page = walker.page
    page.goto("/login/")
    walker.log_in(STAFF_EMAIL)
    walker.visit("/", "Dashboard", "staff-dashboard")
    walker.nav("Usage overview", "/staff/usage/", "Usage overview", "staff-usage")
    page.get_by_role("navigation", name="Time range").get_by_role("link", name="30 days").click()
    walker.visit("/staff/usage/?range=30d", "Usage overview", "staff-usage-30d")
    page.get_by_role("link", name=CUSTOMER_EMAIL).click()
    customer_usage = f"/staff/usage/{customer.default_organization().pk}/"
    walker.visit(customer_usage, f"Usage of {CUSTOMER_EMAIL}", "staff-customer-usage")
    page.get_by_role("navigation", name="Time range").get_by_role("link", name="12 months").click()
    walker.visit(f"{customer_usage}?range=12m", f"Usage of {CUSTOMER_EMAIL}", "staff-customer-usage-12m")
    walker.back_and_forth()

    # The session expires: staff pages lead to Django admin's login, as a whole page.
    admin_login = (None, "Log in | Django site admin")
    page.context.clear_cookies()
    page.get_by_role("navigation", name="Time range").get_by_role("link", name="30 days").click()
    walker.at(f"/admin/login/?next={quote(f'{customer_usage}?range=30d', safe='/')}", *admin_login)
    walker.log_in(STAFF_EMAIL)
    walker.at(f"{customer_usage}?range=30d", f"Usage of {CUSTOMER_EMAIL}")
    page.context.clear_cookies()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage overview").click()
    walker.at("/admin/login/?next=/staff/usage/", *admin_login)

"""The Usage page's last 24 hours refresh themselves while someone can see them."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from tests.browser.helpers import call_api, log_in

# Transactional (a live server): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

POLL_MS = 15_000
SET_HIDDEN = """hidden => {
    for (const [name, value] of [["hidden", hidden], ["visibilityState", hidden ? "hidden" : "visible"]]) {
        Object.defineProperty(document, name, {value, configurable: true});
    }
    document.dispatchEvent(new Event("visibilitychange"));
}"""


@pytest.fixture
def polls(page) -> list[str]:
    """The usage requests the page sends by itself (htmx's, not a navigation)."""
    sent = []
    page.on(
        "request",
        lambda request: request.resource_type == "xhr" and "/usage/" in request.url and sent.append(request.url),
    )
    return sent


def wait_for_refreshes(page, count: int = 1) -> None:
    """The time between refreshes passes (count times), and any refresh sent meanwhile is answered."""
    for _ in range(count):
        page.clock.fast_forward(POLL_MS)
        page.wait_for_function("() => !document.querySelector('#usage-figures.htmx-request')")
    page.wait_for_timeout(200)


def open_usage(page, customer) -> None:
    page.clock.install()  # timers run as usual; fast_forward stands for the wait between refreshes
    log_in(page, customer.email)
    page.goto("/usage/?range=24h")
    expect(page.get_by_text("Refreshes every 15 seconds")).to_be_visible()


def test_calls_appear_on_the_last_24_hours_without_a_reload(page, live_server, customer, usage_store, polls):
    secret = ApiToken.issue(customer.default_organization(), "production")[1]
    page.set_viewport_size({"width": 800, "height": 500})
    open_usage(page, customer)
    expect(page.get_by_text("0 calls in all")).to_be_visible()
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    before = page.evaluate("[history.length, scrollY]")
    assert before[1] > 0

    for uri in ["/v1/en/entities", "/v1/en/entities", "/v1/en/summarization"]:
        call_api(live_server.url, secret, uri)
    for _ in range(20):  # the flusher writes within a second; each refresh shows what is there
        wait_for_refreshes(page)
        if page.get_by_text("3 calls in all").count():
            break
    expect(page.get_by_text("3 calls in all")).to_be_visible()
    assert polls and set(polls) == {f"{live_server.url}/usage/?range=24h"}
    expect(page).to_have_url("/usage/?range=24h")
    assert page.evaluate("[history.length, scrollY]") == before  # no history entry, no jump
    assert page.locator("main").count() == 1 and page.get_by_role("heading", level=1).count() == 1

    page.locator("#usage-figures details").first.evaluate("details => { details.open = true }")  # a chart's table
    polls.clear()
    wait_for_refreshes(page, 4)
    assert polls == []  # it stays open


def test_the_refresh_pauses_while_the_tab_is_hidden_or_the_reader_is_in_the_figures(page, customer, polls):
    open_usage(page, customer)
    wait_for_refreshes(page)
    assert len(polls) == 1

    page.evaluate(SET_HIDDEN, True)
    wait_for_refreshes(page, 4)
    assert len(polls) == 1
    page.evaluate(SET_HIDDEN, False)
    wait_for_refreshes(page)
    assert len(polls) == 2

    page.get_by_role("region", name="Totals per period").focus()  # a keyboard reader scrolling the table
    wait_for_refreshes(page, 4)
    assert len(polls) == 2
    page.get_by_role("link", name="Export CSV").focus()  # out of the figures again
    wait_for_refreshes(page)
    assert len(polls) == 3


def test_other_ranges_do_not_refresh(page, customer, polls):
    open_usage(page, customer)
    page.get_by_role("link", name="7 days").click()
    expect(page.get_by_role("heading", name="Last 7 days")).to_be_visible()
    expect(page.get_by_text("Refreshes every 15 seconds")).to_have_count(0)
    polls.clear()
    wait_for_refreshes(page, 4)
    assert polls == []

"""Token restrictions in a real browser: set on creation, edited later, listed, and obeyed by forward-auth."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from tests.browser.helpers import forward_auth_status, sign_up

# Transactional (a live server): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)


def test_restrictions_set_on_creation_and_edited_later_are_listed_and_obeyed(page, live_server):
    sign_up(page)
    page.get_by_label("Name").fill("ci")
    page.get_by_text("Restrictions (optional)").click()
    page.get_by_label("Allowed client networks").fill("127.0.0.0/8, 2001:db8::/32")
    page.get_by_label("Calls per minute").fill("50")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    row = page.get_by_role("row").filter(has_text="ci")
    expect(row).to_contain_text("Networks: 127.0.0.0/8, 2001:db8::/32")
    expect(row).to_contain_text("50 calls per minute")
    forward_auth_status(live_server.url, secret, "/v1/en/summarization", 200)

    row.get_by_role("link", name="Restrictions").click()
    expect(page).to_have_url(f"/tokens/{ApiToken.objects.get().pk}/restrictions/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Restrictions of “ci”")
    expect(page.get_by_label("Allowed client networks")).to_have_value("127.0.0.0/8, 2001:db8::/32")
    page.get_by_label("Allowed endpoints").fill("/v1/*/entities")
    page.get_by_role("button", name="Save restrictions").click()
    expect(page).to_have_url("/tokens/")
    expect(page.get_by_role("status")).to_contain_text("Restrictions of “ci” saved")
    expect(page.get_by_role("row").filter(has_text="ci")).to_contain_text("Endpoints: /v1/*/entities")

    problem = forward_auth_status(live_server.url, secret, "/v1/en/summarization", 403)
    assert problem["title"] == "Endpoint not allowed for this token"
    forward_auth_status(live_server.url, secret, "/v1/en/entities", 200)

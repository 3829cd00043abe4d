"""Token restrictions in a real browser: set on creation, edited later, listed, and obeyed by forward-auth."""

import json
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from tests.browser.helpers import sign_up

# Transactional (a live server): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)


def forward_auth_status(base_url: str, secret: str, uri: str, expected: int) -> dict:
    """Forward-auth's answer to a call of `uri`, once it is `expected` (changes arrive within a few seconds)."""
    request = urllib.request.Request(
        f"{base_url}/forward-auth",
        headers={"Authorization": f"Bearer {secret}", "X-Forwarded-Uri": uri, "X-Forwarded-For": "127.0.0.1"},
    )
    for _ in range(50):
        try:
            with urllib.request.urlopen(request) as response:
                status, body = response.status, {}
            release = urllib.request.Request(  # the upstream's part: the plan limits calls in flight
                f"{base_url}/forward-auth/release",
                method="POST",
                headers={"X-Lease-Id": response.headers["X-Lease-Id"]},
            )
            urllib.request.urlopen(release).close()
        except urllib.error.HTTPError as error:
            status, body = error.code, json.loads(error.read() or b"{}")
        if status == expected:
            return body
        time.sleep(0.1)
    raise AssertionError(f"forward-auth did not answer {expected} for {uri} within 5 s (last: {status})")


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

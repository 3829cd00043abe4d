"""Organizations end to end, in Chromium: an owner invites a developer and a viewer by e-mail; the
developer signs up from the link, joins, creates a token and calls the API through Traefik (the
shipped configuration, in front of the example NLP API) and sees the calls on the Usage page; the
viewer sees no billing and creates no token (403 pages that say why); the owner's audit log shows
each step, by whom and from where."""

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import ApiToken
from tests.browser.helpers import extract, reload_until, sign_up
from tests.helpers import PASSWORD

# Transactional (a live server and server processes): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

OWNER, DEVELOPER, VIEWER = "owner@example.com", "dev@example.com", "viewer@example.com"


@pytest.fixture
def new_page(browser, live_server):
    """Pages in browser contexts of their own: other people at other computers."""
    contexts = []

    def new_page():
        contexts.append(browser.new_context(base_url=live_server.url))
        return contexts[-1].new_page()

    yield new_page
    for context in contexts:
        context.close()


def nav(page):
    return page.get_by_role("navigation", name="Main")


def invite(page, email: str, role: str) -> None:
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Role:", exact=True).select_option(label=role)
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text(f"Invitation e-mailed to {email}.")).to_be_visible()


def accept_invitation(page, email: str, role: str) -> None:
    """The invitee opens the e-mailed link, signs up with the e-mail it was sent to, accepts and joins."""
    (message,) = [message for message in mail.outbox if message.to == [email]]
    assert message.subject == f"{OWNER} invites you to {OWNER} on NLP API"
    link = re.search(r"https?://\S+/invitations/\S+/", message.body)[0]
    page.goto(link)
    expect(page.get_by_text(f"invites {email} to join {OWNER} as {role.lower()}")).to_be_visible()
    page.get_by_role("link", name="Sign up to accept").click()
    expect(page.get_by_label("E-mail address")).to_have_value(email)  # prefilled from the invitation
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(link)  # back on the invitation, logged in
    page.get_by_role("button", name=f"Accept and join {OWNER}").click()
    expect(page).to_have_url("/")
    expect(page.get_by_text(f"Welcome to {OWNER}: you are {role.lower()}.")).to_be_visible()
    expect(nav(page).get_by_role("link", name=OWNER)).to_be_visible()  # working in the owner's organization


def test_an_owner_invites_a_developer_who_calls_the_api_and_a_viewer_who_cannot_bill_or_create_tokens(
    page, new_page, api
):
    # The owner signs up (their personal organization, named after them) and opens its page.
    sign_up(page, OWNER)
    nav(page).get_by_role("link", name=OWNER).click()
    expect(page).to_have_url("/organization/")
    expect(page.get_by_role("heading", name=OWNER, exact=True)).to_be_visible()

    # A malformed address is a field error, and nothing is sent.
    page.get_by_label("E-mail address").fill("dev@example")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Enter a valid email address.")).to_be_visible()
    expect(page.get_by_label("E-mail address")).to_have_attribute("aria-invalid", "true")
    assert mail.outbox == []

    invite(page, DEVELOPER, "Developer")
    invite(page, VIEWER, "Viewer")
    assert [message.to for message in mail.outbox] == [[DEVELOPER], [VIEWER]]
    waiting = page.get_by_role("heading", name="Waiting for an answer").locator("xpath=..")
    expect(waiting.get_by_role("listitem")).to_have_count(2)

    # The developer joins, creates a token and calls the API through the gateway.
    developer = new_page()
    accept_invitation(developer, DEVELOPER, "Developer")
    nav(developer).get_by_role("link", name="API tokens").click()
    expect(developer.get_by_role("heading", name=f"Tokens of {OWNER}")).to_be_visible()
    developer.get_by_label("Name").fill("ci")
    developer.get_by_role("button", name="Create token").click()
    secret = developer.locator("#new-secret").inner_text()
    token = ApiToken.objects.get()
    assert token.organization.name == OWNER and token.created_by.email == DEVELOPER

    for _ in range(50):  # a new token reaches forward-auth within a second; unknown, it is not recorded
        status, _, body = extract(api, secret)
        if status != 401:
            break
        developer.wait_for_timeout(100)
    calls = [status] + [extract(api, secret)[0] for _ in range(2)]
    assert calls == [200, 200, 200]
    assert {"start": 0, "end": 12, "type": "PERSON", "text": "Ada Lovelace"} in body["entities"]

    # The calls are the organization's: on the developer's Usage page, and the owner's.
    nav(developer).get_by_role("link", name="Usage").click()
    reload_until(developer, "3 calls in all")
    reload_until(developer, "24 words in all")  # 8 words a call, reported by the NLP API
    page.goto("/usage/")
    expect(page.get_by_text("3 calls in all")).to_be_visible()

    # The viewer joins: usage, but no billing and no tokens, in the menu or at their addresses.
    viewer = new_page()
    accept_invitation(viewer, VIEWER, "Viewer")
    expect(nav(viewer).get_by_role("link", name="Usage")).to_be_visible()
    expect(nav(viewer).get_by_role("link", name="API tokens")).to_have_count(0)
    expect(nav(viewer).get_by_role("link", name="Billing")).to_have_count(0)
    for address, why in [("/billing/", "see or change billing"), ("/tokens/", "manage API tokens")]:
        response = viewer.goto(address)
        assert response.status == 403, address
        expect(viewer.get_by_role("heading", name="Access denied")).to_be_visible()
        expect(
            viewer.get_by_text(f"As viewer of {OWNER} you cannot {why}. Ask an owner for another role.")
        ).to_be_visible()
    csrf = viewer.locator("input[name=csrfmiddlewaretoken]").first.input_value()  # the Log out form's
    refused = viewer.request.post("/tokens/", form={"name": "sneaky", "csrfmiddlewaretoken": csrf})
    assert refused.status == 403 and "you cannot manage API tokens" in refused.text()
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["ci"]

    # The owner's audit log shows each step, newest first: what, to what, who, from where.
    page.goto("/organization/")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name=f"Audit log of {OWNER}")).to_be_visible()
    rows = page.get_by_role("row")
    expect(rows).to_have_count(6)  # the header and five events
    expected = [
        ["Member joined", f"{VIEWER} as viewer", VIEWER],
        ["Token created", f"ci ({token.prefix}…)", DEVELOPER],
        ["Member joined", f"{DEVELOPER} as developer", DEVELOPER],
        ["Member invited", f"{VIEWER} as viewer", OWNER],
        ["Member invited", f"{DEVELOPER} as developer", OWNER],
    ]
    for row, (what, subject, who) in zip([rows.nth(i) for i in range(1, 6)], expected, strict=True):
        expect(row.get_by_role("cell")).to_have_text([re.compile(r"\d{4}-\d\d-\d\d "), what, subject, who, "127.0.0.1"])

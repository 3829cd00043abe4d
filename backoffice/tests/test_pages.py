"""Every page answers a full page, its fragment to htmx, and the full page to a history restore."""

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from accounts.models import ApiToken
from tests.helpers import HISTORY_RESTORE, HTMX

ANONYMOUS_PAGES = ["login", "signup", "password_reset", "password_reset_done", "password_reset_complete"]
CUSTOMER_PAGES = [
    "dashboard",
    "tokens",
    "usage",
    "billing",
    "support",
    "account",
    "password_change",
    "password_change_done",
]


PAGES = [(name, False) for name in ANONYMOUS_PAGES] + [(name, True) for name in CUSTOMER_PAGES]


@pytest.fixture(params=PAGES, ids=[name for name, _ in PAGES])
def page_url(request, client, customer) -> str:
    """The URL of each page in turn, with the client logged in where the page needs it."""
    name, needs_login = request.param
    if needs_login:
        client.force_login(customer)
    return reverse(name)


def csp(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header's directives and their sources."""
    return {name: sources for name, *sources in (d.split() for d in response["Content-Security-Policy"].split(";"))}


def test_a_normal_request_gets_the_full_page(client, page_url):
    response = client.get(page_url)
    assert response.status_code == 200
    assert b"<!doctype html>" in response.content
    assert b'<main id="content"' in response.content


def test_an_htmx_request_gets_only_the_content_fragment(client, page_url):
    response = client.get(page_url, **HTMX)
    assert response.status_code == 200
    assert b"<html" not in response.content and b'aria-label="Main"' not in response.content
    assert b"<h1>" in response.content


def test_the_fragment_brings_the_pages_title_for_htmx_to_set(client, page_url):
    full = client.get(page_url).content.decode()
    fragment = client.get(page_url, **HTMX).content.decode()
    title = re.search(r"<title>(.*?)</title>", full).group(0)
    assert fragment.startswith(title) and fragment.count("<title>") == 1


def test_a_history_restore_gets_the_full_page(client, page_url):
    response = client.get(page_url, **HISTORY_RESTORE)
    assert b"<!doctype html>" in response.content


def test_every_page_varies_on_hx_request(client, page_url):
    for headers in [{}, HTMX]:
        assert "HX-Request" in client.get(page_url, **headers)["Vary"]


@pytest.mark.parametrize("name", CUSTOMER_PAGES)
def test_customer_pages_send_anonymous_visitors_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_an_expired_session_during_htmx_sends_the_browser_to_login(client, db):
    response = client.get(reverse("tokens"), **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('login')}?next={reverse('tokens')}"
    assert response.content == b""


def test_an_expired_staff_session_during_htmx_sends_the_browser_to_the_admin_login(client, db):
    response = client.get(reverse("usage_overview"), {"range": "30d"}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('admin:login')}?next=/staff/usage/%3Frange%3D30d"


def test_other_redirects_during_htmx_are_left_to_htmx(customer_client):
    response = customer_client.get(reverse("signup"), **HTMX)  # signed in: sign-up redirects to the dashboard
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")


def test_a_page_without_a_fragment_falls_back_to_the_full_page(staff_client):
    response = staff_client.get(reverse("admin:index"), **HTMX)
    assert response.status_code == 200
    assert b"<html" in response.content


def test_the_shell_serves_htmx_locally_and_sends_csrf_with_htmx_requests(customer_client):
    html = customer_client.get(reverse("dashboard")).content.decode()
    assert '<script src="/static/htmx-2.0.11.min.js"' in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert 'hx-indicator="#progress"' in html


def test_navigation_links_exist_only_for_pages_that_exist(customer_client):
    html = customer_client.get(reverse("dashboard")).content.decode()
    for name in ["dashboard", "tokens", "account"]:
        url = reverse(name)
        assert f'href="{url}" hx-get="{url}"' in html
    assert reverse("admin:index") not in html  # staff only


def test_links_in_a_page_navigate_with_htmx_as_the_nav_does(client, page_url):
    links = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "a":
                links.append(dict(attrs))

    Links().feed(client.get(page_url, **HTMX).content.decode())
    for link in links:
        if link["href"].startswith("/") and "download" not in link:
            assert (link.get("hx-get"), link.get("hx-target"), link.get("hx-push-url")) == (
                link["href"],
                "#content",
                "true",
            ), link


def test_unknown_urls_get_404_not_500(customer_client):
    assert customer_client.get("/no-such-page/").status_code == 404
    assert customer_client.get("/tokens/not-a-number/revoke/").status_code == 404


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_page_showing_a_token_secret_is_stored_by_no_browser_cache(customer_client, headers):
    created = customer_client.post(reverse("tokens"), {"name": "laptop"}, **headers)
    rotated = customer_client.post(reverse("rotate_token", args=[ApiToken.objects.get().pk]), **headers)
    for response in [created, rotated]:
        assert b"new-secret" in response.content
        assert "no-store" in response["Cache-Control"]
    assert "Cache-Control" not in customer_client.get(reverse("tokens"), **headers)  # the list alone: as any page


def test_every_page_sends_a_strict_content_security_policy(client, page_url):
    for headers in [{}, HTMX]:
        response = client.get(page_url, **headers)
        policy = csp(response)
        assert policy["default-src"] == policy["script-src"] == policy["style-src"] == ["'self'"]
        assert policy["object-src"] == policy["frame-ancestors"] == ["'none'"]
        assert policy["base-uri"] == ["'self'"]
        assert policy["form-action"][0] == "'self'"
        assert "unsafe" not in response["Content-Security-Policy"]


def test_the_admin_is_under_the_same_policy(staff_client):
    assert csp(staff_client.get(reverse("admin:index")))["script-src"] == ["'self'"]


def test_forms_may_lead_only_here_and_to_stripes_checkout_and_portal(customer_client):
    policy = csp(customer_client.get(reverse("billing")))
    assert policy["form-action"] == ["'self'", "https://checkout.stripe.com", "https://billing.stripe.com"]

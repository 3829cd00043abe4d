"""400, 403, 404 and 500 answer pages in the site's layout; a 500 without touching the database."""

import pytest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client
from django.urls import path, reverse

from backoffice import urls as site
from tests.helpers import HTMX


def refused(request):
    raise PermissionDenied


def suspicious(request):
    raise SuspiciousOperation("a test's")


def broken(request):
    raise RuntimeError("a bug")


# The site, plus views that fail in each way; Django looks the error handlers up in the root URLconf: this module.
urlpatterns = [path("refused/", refused), path("suspicious/", suspicious), path("broken/", broken), *site.urlpatterns]
handler400, handler403, handler404, handler500 = site.handler400, site.handler403, site.handler404, site.handler500

pytestmark = pytest.mark.urls(__name__)


def in_layout(response) -> str:
    html = response.content.decode()
    assert '<main id="content"' in html and '<nav aria-label="Main"' in html
    assert f'href="{reverse("dashboard")}"' in html  # a way back
    return html


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_an_unknown_address_is_a_404_page_in_the_layout_with_the_customers_menu(customer_client, headers):
    response = customer_client.get("/no-such-page/", **headers)
    assert response.status_code == 404
    html = in_layout(response)
    assert "<h1>Not found</h1>" in html and "Log out" in html
    assert "data-error" in html  # what app.js reads to show it as an alert


def test_a_refused_request_is_a_403_page_in_the_layout(customer_client):
    response = customer_client.get("/refused/")
    assert response.status_code == 403
    assert "<h1>Access denied</h1>" in in_layout(response)


def test_a_form_without_its_csrf_token_is_a_403_page_saying_to_reload(customer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    response = client.post(reverse("tokens"), {"name": "laptop"})
    assert response.status_code == 403
    assert "Reload the page and send it again." in in_layout(response)
    assert not customer.default_organization().tokens.exists()


def test_a_bad_request_is_a_400_page_in_the_layout(client, db):
    for response in [client.get("/suspicious/"), client.get("/", HTTP_HOST="not-ours.example")]:
        assert response.status_code == 400
        assert "<h1>Bad request</h1>" in in_layout(response)


def test_a_server_error_is_a_500_page_in_the_layout_made_without_a_database_query(
    customer_client, django_assert_num_queries
):
    customer_client.raise_request_exception = False
    with django_assert_num_queries(0):  # a signed-in customer's page would read the session and the user
        response = customer_client.get("/broken/")
    assert response.status_code == 500
    html = in_layout(response)
    assert "<h1>Something went wrong</h1>" in html
    assert "Log out" not in html and "data-signed-out" not in html  # it knows no one: no menu, no signed-out cleanup

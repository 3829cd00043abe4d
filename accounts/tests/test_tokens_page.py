import logging

import pytest
from django.urls import reverse

from accounts.models import ApiToken
from tests.helpers import HTMX, authenticates


@pytest.fixture
def token(customer) -> ApiToken:
    return ApiToken.issue(customer.default_organization(), "laptop")[0]


def test_creating_a_token_shows_its_secret_once(customer_client, customer, caplog):
    caplog.set_level(logging.DEBUG)
    response = customer_client.post(reverse("tokens"), {"name": "production"}, **HTMX)
    token = customer.default_organization().tokens.get()
    secret = response.context_data["issued_secret"]
    assert token.name == "production" and authenticates(secret)
    assert secret in response.content.decode()
    assert secret not in customer_client.get(reverse("tokens")).content.decode()
    assert secret not in caplog.text


def test_the_token_list_shows_name_prefix_and_last_use_but_no_secret(customer_client, token):
    html = customer_client.get(reverse("tokens")).content.decode()
    assert "laptop" in html and token.prefix in html and "never" in html
    assert token.digest not in html


def test_a_token_needs_a_name(customer_client, customer):
    response = customer_client.post(reverse("tokens"), {"name": "   "}, **HTMX)
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not customer.default_organization().tokens.exists()


def test_a_too_long_name_is_a_field_error_not_a_crash(customer_client, customer):
    response = customer_client.post(reverse("tokens"), {"name": "x" * 500})
    assert "Ensure this value has at most 100 characters" in response.content.decode()
    assert not customer.default_organization().tokens.exists()


def test_revoking_a_token_over_htmx_returns_the_updated_list(customer_client, token):
    response = customer_client.post(reverse("revoke_token", args=[token.pk]), **HTMX)
    token.refresh_from_db()
    assert not token.is_active
    assert b"<html" not in response.content and b"revoked" in response.content


def test_revoking_without_htmx_redirects_back_to_the_list(customer_client, token):
    response = customer_client.post(reverse("revoke_token", args=[token.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("tokens")


def test_rotating_a_token_shows_the_new_secret(customer_client, token):
    response = customer_client.post(reverse("rotate_token", args=[token.pk]), **HTMX)
    secret = response.context_data["issued_secret"]
    assert authenticates(secret)
    assert secret in response.content.decode()


@pytest.mark.parametrize("action", ["revoke_token", "rotate_token"])
def test_a_customer_cannot_act_on_another_customers_token(client, other_customer, token, action):
    client.force_login(other_customer)
    response = client.post(reverse(action, args=[token.pk]))
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.is_active and ApiToken.objects.get(pk=token.pk).digest == token.digest


def test_a_customer_never_sees_another_customers_tokens(client, other_customer, token):
    client.force_login(other_customer)
    assert token.prefix not in client.get(reverse("tokens")).content.decode()


@pytest.mark.parametrize("action", ["revoke_token", "rotate_token"])
def test_token_actions_refuse_get(customer_client, token, action):
    assert customer_client.get(reverse(action, args=[token.pk])).status_code == 405


def test_a_revoked_token_cannot_be_rotated_back_to_life(customer_client, token):
    token.revoke()
    assert customer_client.post(reverse("rotate_token", args=[token.pk])).status_code == 404


def test_an_htmx_post_without_the_csrf_header_is_refused(customer, token):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(customer)
    assert csrf_client.post(reverse("revoke_token", args=[token.pk]), **HTMX).status_code == 403
    page = csrf_client.get(reverse("tokens"))
    csrf = page.cookies["csrftoken"].value
    response = csrf_client.post(reverse("revoke_token", args=[token.pk]), HTTP_X_CSRFTOKEN=csrf, **HTMX)
    assert response.status_code == 200

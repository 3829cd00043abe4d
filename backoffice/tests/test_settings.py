"""Settings come from the environment, strictly; production mode passes `check --deploy`."""

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory

from tests.servers import backoffice, free_port
from usage.models import Quantity

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-secret-" + "x" * 50,
    "ALLOWED_HOSTS": "backoffice.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # A clean environment: nothing of the test run's own (DEBUG, ...) leaks in.
    environment = {"PATH": os.environ["PATH"], "DATABASE_URL": os.environ["DATABASE_URL"]} | env
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=environment, cwd=settings.BASE_DIR, capture_output=True, text=True
    )


def test_production_mode_passes_the_deployment_checks_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_mode_refuses_to_start_without_a_secret_key():
    result = manage("check", **{**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable." in result.stderr


@pytest.mark.parametrize(
    "command", [["collectstatic", "--noinput", "--dry-run"], ["check", "--deploy", "--fail-level", "WARNING"]]
)
def test_commands_that_need_no_database_run_in_production_mode_without_one(command):
    result = manage(*command, **{**PRODUCTION, "DATABASE_URL": ""})
    assert result.returncode == 0, result.stderr


def test_without_a_database_url_the_first_query_says_what_to_set():
    result = manage("migrate", **{**PRODUCTION, "DATABASE_URL": ""})
    assert result.returncode != 0
    assert "Set the DATABASE_URL environment variable." in result.stderr


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("LOGIN_FAILURES_PER_EMAIL", "five", "LOGIN_FAILURES_PER_EMAIL must be an integer"),
        ("TRUSTED_PROXY_COUNT", "one", "TRUSTED_PROXY_COUNT must be an integer"),
        ("TRUSTED_PROXY_COUNT", "-1", "TRUSTED_PROXY_COUNT must be 0 or more"),
        ("DATABASE_POOL_SIZE", "ten", "DATABASE_POOL_SIZE must be an integer"),
        ("DATABASE_POOL_SIZE", "2", "DATABASE_POOL_SIZE must be at least 3"),
        ("DATABASE_POOL_TIMEOUT", "0", "DATABASE_POOL_TIMEOUT must be a positive number"),
        ("DATABASE_URL", "nosuchdb://x", "DATABASE_URL is not a valid database URL"),
    ],
)
def test_a_malformed_setting_stops_start_up_with_a_message_naming_it(variable, value, message):
    result = manage("check", **{**PRODUCTION, variable: value})
    assert result.returncode != 0
    assert message in result.stderr


STACK = (settings.BASE_DIR / "deploy" / "traefik" / "stack.yml").read_text()


def stack_setting(name: str) -> str:
    """A variable of deploy/traefik/stack.yml's environment (each is set once there)."""
    return re.search(rf"^\s+{name}: (\S+)", STACK, re.MULTILINE).group(1)


@pytest.mark.django_db(transaction=True)
def test_in_production_the_model_services_report_quantities_over_the_internal_network(tmp_path):
    port = free_port()
    internal_host = urlsplit(stack_setting("BACKOFFICE_URL")).netloc  # where the stack's nlp-api posts: backoffice:8000
    production = {
        "DEBUG": "0",
        "ALLOWED_HOSTS": stack_setting("ALLOWED_HOSTS"),
        "USAGE_SERVICE_TOKEN": "service-secret",
        "USAGE_JOURNAL_DIR": str(tmp_path),
    }
    with backoffice(port, **production):
        quantities = json.dumps([{"request_id": "call-1", "words": 12, "characters": 80}]).encode()
        status, _ = fetch(
            f"http://127.0.0.1:{port}/usage/quantities",
            quantities,
            Host=internal_host,
            Authorization="Bearer service-secret",
            **{"Content-Type": "application/json"},
        )
        page_status, location = fetch(f"http://127.0.0.1:{port}/login/", Host="backoffice.example.com")
    assert status == 200
    assert list(Quantity.objects.values_list("request_id", "words", "characters")) == [("call-1", 12, 80)]
    assert (page_status, location) == (301, "https://backoffice.example.com/login/")


def fetch(url: str, body: bytes | None = None, **headers: str) -> tuple[int, str | None]:
    """The status and Location of a GET (or a POST of `body`), redirects not followed."""
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(urllib.request.Request(url, data=body, headers=headers), timeout=10) as response:
            return response.status, response.headers["Location"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Location"]


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


@pytest.mark.parametrize("path", ["/forward-auth", "/forward-auth/release", "/usage/quantities"])
def test_machine_endpoints_are_served_over_plain_http_with_the_ssl_redirect_on(path, settings):
    settings.SECURE_SSL_REDIRECT = True
    request = RequestFactory().post(path, HTTP_HOST="backoffice:8000")
    assert SecurityMiddleware(lambda request: None).process_request(request) is None


@pytest.mark.parametrize(
    "path", ["/", "/login/", "/usage/", "/admin/", "/forward-auth-elsewhere", "/usage/quantities/x"]
)
def test_pages_redirect_to_https(path, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = SecurityMiddleware(lambda request: None).process_request(RequestFactory().get(path))
    assert response.status_code == 301 and response["Location"].startswith("https://")

"""Settings come from the environment, strictly; production mode passes `check --deploy`."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

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

"""Helpers of the browser tests (fixtures stay in conftest.py)."""

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from playwright.sync_api import expect

from tests.helpers import PASSWORD

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", settings.BASE_DIR / "test-artifacts" / "screenshots"))


def sign_up(page, email="ada@example.com"):
    page.goto("/signup/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url("/tokens/")


def call_api(base_url: str, secret: str, uri: str, plan: str | None = None) -> dict:
    """One API call as Traefik would check it, then the upstream's release of its concurrency lease.

    Token and plan changes reach the forward-auth snapshot within FORWARD_AUTH_REFRESH_SECONDS:
    retry meanwhile (a 401 for a new token, the old plan for a changed one). Returns the identity headers.
    """
    request = urllib.request.Request(
        f"{base_url}/forward-auth", headers={"Authorization": f"Bearer {secret}", "X-Forwarded-Uri": uri}
    )
    for _ in range(50):
        try:
            with urllib.request.urlopen(request) as response:
                headers = dict(response.headers)
            release = urllib.request.Request(
                f"{base_url}/forward-auth/release", method="POST", headers={"X-Lease-Id": headers["X-Lease-Id"]}
            )
            assert urllib.request.urlopen(release).status == 204
            if plan is None or headers["X-Plan"] == plan:
                return headers
        except urllib.error.HTTPError as error:
            assert error.code == 401, error.code
        time.sleep(0.1)
    raise AssertionError(f"no answer with the expected token and plan {plan} within 5 s")


def forward_auth_status(base_url: str, secret: str, uri: str, expected: int) -> dict:
    """Forward-auth's answer to a call of `uri`, once it is `expected` (changes arrive within a few seconds)."""
    request = urllib.request.Request(
        f"{base_url}/forward-auth",
        headers={"Authorization": f"Bearer {secret}", "X-Forwarded-Uri": uri, "X-Forwarded-For": "127.0.0.1"},
    )
    for _ in range(50):
        try:
            with urllib.request.urlopen(request) as response:
                status, body = response.status, {}
            release = urllib.request.Request(  # the upstream's part: the plan limits calls in flight
                f"{base_url}/forward-auth/release",
                method="POST",
                headers={"X-Lease-Id": response.headers["X-Lease-Id"]},
            )
            urllib.request.urlopen(release).close()
        except urllib.error.HTTPError as error:
            status, body = error.code, json.loads(error.read() or b"{}")
        if status == expected:
            return body
        time.sleep(0.1)
    raise AssertionError(f"forward-auth did not answer {expected} for {uri} within 5 s (last: {status})")


def log_in(page, email):
    page.goto("/login/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url("/")


def extract(api: str, secret: str, log: list[int] | None = None) -> tuple[int, dict, dict]:
    """POST /v1/entities through the gateway (the `api` fixture); the status is appended to `log`."""
    request = urllib.request.Request(
        f"{api}/v1/entities",
        method="POST",
        data=json.dumps({"text": "Ada Lovelace was born in London in 1815."}).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = error.code, dict(error.headers), json.loads(error.read())
    if log is not None:
        log.append(answer[0])
    return answer


def reload_until(page, text: str, seconds: float = 10) -> None:
    """Reload until the page shows `text` (usage arrives through the flusher, within seconds)."""
    for _ in range(int(seconds * 4)):
        if text in page.content():
            return
        page.wait_for_timeout(250)
        page.reload()
    expect(page.get_by_text(text).first).to_be_visible()

"""`make run`: the whole system on embedded defaults, driven as a newcomer would, and stopped with Ctrl-C."""

import csv
import http.cookiejar
import io
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

from backoffice.ports import free_port
from tests.servers import Server, processes_using, wait_for


def test_make_run_serves_the_api_through_traefik_counts_the_calls_and_stops_cleanly(tmp_path):
    ports = {name: str(free_port()) for name in ("PORT", "API_PORT", "GATEWAY_PORT")}
    env = {"PATH": os.environ["PATH"], "DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **ports}
    run = Server(
        [sys.executable, "-m", "backoffice.run"],
        cwd=settings.BASE_DIR,
        env=env,
    )
    output = run.output
    try:
        assert wait_for(lambda: "Ctrl-C stops everything" in output() or run.poll() is not None, 180), output()
        assert run.poll() is None, output()
        url, token = re.search(r"curl -i -X POST (\S+) -H 'Authorization: Bearer (\S+)'", output()).groups()
        assert url == f"http://127.0.0.1:{ports['GATEWAY_PORT']}/v1/entities"

        answers = [call_api(url, token) for _ in range(11)]  # the Free plan: 10 a minute
        assert [status for status, _, _ in answers] == [200] * 10 + [429]
        assert {"type": "PERSON", "text": "Ada Lovelace", "start": 0, "end": 12} in answers[0][2]["entities"]
        _, headers, problem = answers[-1]
        assert headers["Retry-After"] and headers["RateLimit"].startswith('"minute";r=0')
        assert problem["window"] == "minute"

        password = re.search(r"Created demo customer: demo@example.com / (\S+)", output()).group(1)
        browser = logged_in(f"http://127.0.0.1:{ports['PORT']}", "demo@example.com", password)
        assert wait_for(lambda: usage_totals(browser, ports["PORT"]) == (11, 1, 80), 10), usage_totals(
            browser, ports["PORT"]
        )
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C
        run.wait(timeout=60)
        output.complete()
    assert run.returncode == 0, output()
    assert "Traceback" not in output() and "ERROR" not in output(), output()
    assert not processes_using(tmp_path), "a process outlived make run"
    assert (tmp_path / "postgres" / "PG_VERSION").exists()  # the data stays for the next run


def call_api(url: str, token: str) -> tuple[int, "http.client.HTTPMessage", dict]:
    body = json.dumps({"text": "Ada Lovelace was born in London in 1815."}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.load(error)


def logged_in(site: str, email: str, password: str) -> urllib.request.OpenerDirector:
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    browser.open(f"{site}/login/").read()
    csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")
    form = urllib.parse.urlencode({"username": email, "password": password, "csrfmiddlewaretoken": csrf}).encode()
    with browser.open(
        urllib.request.Request(f"{site}/login/", data=form, headers={"Referer": f"{site}/login/"})
    ) as response:
        assert urllib.parse.urlparse(response.url).path == "/", "not logged in"
    return browser


def usage_totals(browser, port: str) -> tuple[int, int, int]:
    """Requests, refused calls and words of the last 24 hours, as the Usage page's CSV export has them."""
    with browser.open(f"http://127.0.0.1:{port}/usage/export.csv?range=24h") as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    return tuple(sum(int(row[column]) for row in rows) for column in ("requests", "refused", "words"))

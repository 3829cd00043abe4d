"""Each process takes its database connections from one bounded pool: a burst of requests waits for them,
and the pool reconnects within seconds of an outage's end."""

import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.servers import backoffice, backoffice_env, free_port

BURST = 200
POOL_SIZE = 5
APPLICATION_NAME = "pool-burst-test"  # libpq names the server's connections after PGAPPNAME


def status_of(url: str, cookie: str) -> int:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def open_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)  # the server's connections must see the customer and their session
def test_a_burst_of_page_requests_waits_for_the_pool_instead_of_opening_connections(customer):
    client = Client()
    client.force_login(customer)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    port = free_port()
    server = {"WEB_THREADS": "64", "DATABASE_POOL_SIZE": str(POOL_SIZE), "DATABASE_POOL_TIMEOUT": "60"}
    with backoffice(port, PGAPPNAME=APPLICATION_NAME, **server):  # many more threads than connections
        url = f"http://127.0.0.1:{port}/"
        assert status_of(url, cookie) == 200
        with ThreadPoolExecutor(BURST) as requests:
            answers = [requests.submit(status_of, url, cookie) for _ in range(BURST)]
            peak = 0
            while not all(answer.done() for answer in answers):
                peak = max(peak, open_connections())
                time.sleep(0.02)
        statuses = [answer.result() for answer in answers]
        peak = max(peak, open_connections())
    assert statuses == [200] * BURST
    assert 0 < peak <= POOL_SIZE


# A process that queries its database in a loop and says when it stopped, then started again, answering.
QUERYING_PROCESS = """
import time
import django
django.setup()
from django.db import connection

def answers():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False
    finally:
        connection.close()

deadline = time.time() + 60
assert answers()
print("up", flush=True)
while answers() and time.time() < deadline:
    time.sleep(0.02)
while not answers() and time.time() < deadline:
    pass
print(time.time(), flush=True)
"""


def test_after_an_outage_the_pool_answers_again_within_seconds(db):
    database = connection.settings_dict["NAME"]
    params = connection.get_connection_params()
    admin = psycopg.connect(
        dbname="postgres", user=params["user"], host=params["host"], port=params["port"], autocommit=True
    )
    env = backoffice_env(DJANGO_SETTINGS_MODULE="backoffice.settings", DATABASE_POOL_TIMEOUT="1")
    process = subprocess.Popen(
        [sys.executable, "-c", QUERYING_PROCESS], env=env, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline() == "up\n"
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                [database, connection.cursor().connection.info.backend_pid],
            )
            time.sleep(20)  # by then psycopg's default backoff waits up to 16 s between attempts
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        restored = time.time()
        answered_again = float(process.communicate(timeout=70)[0])
    finally:
        process.kill()
        admin.close()
    assert answered_again - restored < 4

"""Login throttling: on /login/ and /admin/login/ alike, per (e-mail, client IP) and per client IP."""

import threading

import pytest
from django.db import connection
from django.test import Client

from accounts.models import User
from tests.helpers import PASSWORD

TRAEFIK = "10.0.0.2"  # behind the proxy, every request comes from it
ATTACKER, CUSTOMER = "198.51.100.7", "203.0.113.9"


def log_in(client: Client, email: str, password: str, url: str = "/login/", **headers: str):
    response = client.post(url, {"username": email, "password": password}, **headers)
    return response, "_auth_user_id" in client.session


def via_traefik(client_ip: str) -> dict[str, str]:
    return {"REMOTE_ADDR": TRAEFIK, "HTTP_X_FORWARDED_FOR": client_ip}


def test_repeated_failed_logins_are_throttled_even_with_the_right_password(client, customer, settings):
    settings.LOGIN_FAILURES_PER_EMAIL = 3
    for _ in range(3):
        response, _ = log_in(client, customer.email, "wrong")
        assert "Please enter a correct" in response.content.decode()
    response, logged_in = log_in(client, customer.email, PASSWORD)
    assert response.status_code == 200 and not logged_in
    assert "Too many failed attempts" in response.content.decode()


def test_throttling_also_counts_failures_per_client_address(client, customer, settings):
    settings.LOGIN_FAILURES_PER_IP = 2
    for attempt in range(2):
        log_in(client, f"nobody{attempt}@example.com", "x")
    response, logged_in = log_in(client, customer.email, PASSWORD)
    assert "Too many failed attempts" in response.content.decode() and not logged_in


def test_a_successful_login_clears_the_failures_of_its_address(client, customer, settings):
    settings.LOGIN_FAILURES_PER_EMAIL = 3
    for _ in range(2):
        log_in(client, customer.email, "wrong")
    assert log_in(client, customer.email, PASSWORD)[1]
    client.logout()
    for _ in range(2):
        log_in(client, customer.email, "wrong")
    assert log_in(client, customer.email, PASSWORD)[1]


def test_the_admin_login_is_throttled_too(client, staff_user):
    for _ in range(60):
        log_in(client, staff_user.email, "wrong", url="/admin/login/")
    response, logged_in = log_in(client, staff_user.email, PASSWORD, url="/admin/login/")
    assert not logged_in
    assert "Too many failed attempts" in response.content.decode()


def test_the_admin_login_shares_the_counters_of_the_login_page(client, staff_user, settings):
    settings.LOGIN_FAILURES_PER_EMAIL = 3
    for _ in range(3):
        log_in(client, staff_user.email, "wrong")
    response, logged_in = log_in(client, staff_user.email, PASSWORD, url="/admin/login/")
    assert not logged_in and "Too many failed attempts" in response.content.decode()


def test_the_admin_login_still_refuses_customers_and_lets_staff_in(client, customer, staff_user):
    response, logged_in = log_in(client, customer.email, PASSWORD, url="/admin/login/")
    assert not logged_in and "for a staff account" in response.content.decode()
    assert log_in(client, staff_user.email, PASSWORD, url="/admin/login/")[1]


@pytest.mark.django_db(transaction=True)  # the threads' own connections must see the user
def test_concurrent_attempts_cannot_check_more_passwords_than_the_limit(customer, settings, monkeypatch):
    settings.LOGIN_FAILURES_PER_EMAIL = 5
    checked = []
    check_password = User.check_password

    def counting_check_password(user, raw_password):
        checked.append(raw_password)
        return check_password(user, raw_password)

    monkeypatch.setattr(User, "check_password", counting_check_password)
    start = threading.Barrier(20)

    def attempt():
        try:
            start.wait()
            log_in(Client(), customer.email, "wrong")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) <= 5


def test_behind_the_proxy_one_client_failing_does_not_lock_out_the_others(client, customer, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_FAILURES_PER_IP = 3
    for attempt in range(10):
        log_in(client, f"nobody{attempt}@example.com", "x", **via_traefik(ATTACKER))
    assert log_in(Client(), customer.email, PASSWORD, **via_traefik(CUSTOMER))[1]
    response, logged_in = log_in(Client(), customer.email, PASSWORD, **via_traefik(ATTACKER))
    assert not logged_in and "Too many failed attempts" in response.content.decode()


def test_failing_on_someone_elses_address_does_not_lock_them_out_from_elsewhere(client, customer, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_FAILURES_PER_EMAIL = 3
    for _ in range(10):
        log_in(client, customer.email, "guess", **via_traefik(ATTACKER))
    response, logged_in = log_in(Client(), customer.email, PASSWORD, **via_traefik(ATTACKER))
    assert not logged_in and "Too many failed attempts" in response.content.decode()
    assert log_in(Client(), customer.email, PASSWORD, **via_traefik(CUSTOMER))[1]


def test_a_forged_forwarded_address_does_not_escape_the_throttle(client, customer, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_FAILURES_PER_EMAIL = 3
    for attempt in range(10):
        # Traefik appends the address it saw; the client wrote everything to its left.
        log_in(client, customer.email, "guess", **via_traefik(f"192.0.2.{attempt}, {ATTACKER}"))
    response, logged_in = log_in(Client(), customer.email, PASSWORD, **via_traefik(f"192.0.2.99, {ATTACKER}"))
    assert not logged_in and "Too many failed attempts" in response.content.decode()


def test_an_ipv6_client_is_counted_per_64_network_not_per_address(client, customer, settings):
    settings.LOGIN_FAILURES_PER_EMAIL = 3
    for attempt in range(1, 6):
        log_in(client, customer.email, "guess", REMOTE_ADDR=f"2001:db8:0:1::{attempt}")
    response, logged_in = log_in(Client(), customer.email, PASSWORD, REMOTE_ADDR="2001:db8:0:1::ffff")
    assert not logged_in and "Too many failed attempts" in response.content.decode()
    assert log_in(Client(), customer.email, PASSWORD, REMOTE_ADDR="2001:db8:0:2::1")[1]

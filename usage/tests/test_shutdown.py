"""A clean shutdown of the deployed server (granian, SIGTERM) writes every buffered event."""

import urllib.request

import pytest

from accounts.models import ApiToken
from billing.models import Customer, Plan
from tests.servers import backoffice, free_port
from usage.models import ApiCall

# Transactional (a live server or a server process): pytest-django runs these after the others.
pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_flushes_the_usage_buffer(transactional_db, usage_store, customer):
    Customer.objects.create(
        organization=customer.default_organization(), plan=Plan.objects.create(name="Open", slug="open")
    )
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    port = free_port()
    with backoffice(port, USAGE_FLUSH_SECONDS="600"):  # no timed flush: only the shutdown can write them
        for _ in range(25):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/forward-auth", headers={"Authorization": f"Bearer {secret}"}
            )
            assert urllib.request.urlopen(request).status == 200
        assert ApiCall.objects.filter(account_id=customer.default_organization().pk).count() == 0
    # leaving the block sent SIGTERM and waited for the server to exit
    assert ApiCall.objects.filter(account_id=customer.default_organization().pk).count() == 25

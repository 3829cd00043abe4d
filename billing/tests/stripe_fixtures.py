"""Fixtures: Stripe as the tests see it (registered by the root conftest)."""

import sys
import urllib.request

import pytest
import stripe

from billing.stripe_client import configure
from billing.tests.fake_stripe import FakeStripe
from tests.servers import free_port, running

WEBHOOK_SECRET = "whsec_test_backoffice"
PRICES = {"price_starter_monthly": 2900, "price_pro_monthly": 19900, "price_payg_words": 0}


@pytest.fixture(scope="session")
def localstripe():
    """localstripe (PyPI) on a free port, fresh for the session; a missing one fails, never skips."""
    port = free_port()
    with running([sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"], port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def fake_stripe(localstripe) -> FakeStripe:
    return FakeStripe(localstripe)


@pytest.fixture
def stripe_server(settings, localstripe, fake_stripe) -> FakeStripe:
    """Stripe, emptied, with our plans' prices; our code configured to use it."""
    urllib.request.urlopen(urllib.request.Request(f"{localstripe}/_config/data", method="DELETE"), timeout=30)
    fake_stripe.reset()
    settings.STRIPE_SECRET_KEY = "sk_test_backoffice"
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    configure()
    stripe.max_network_retries = 0
    for price, amount in PRICES.items():
        stripe.Plan.create(id=price, amount=amount, currency="usd", interval="month", product={"name": price})
    yield fake_stripe
    settings.STRIPE_SECRET_KEY = ""


@pytest.fixture
def stripe_down(settings):
    """Stripe unreachable: nothing listens on its address."""
    settings.STRIPE_SECRET_KEY = "sk_test_backoffice"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    configure()
    stripe.max_network_retries = 0
    yield
    settings.STRIPE_SECRET_KEY = ""

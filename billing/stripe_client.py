"""Stripe's client, configured once (billing/apps.py): key, API base, pinned API version, retries."""

import stripe
from django.conf import settings


def configure() -> None:
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = settings.STRIPE_API_BASE
    stripe.api_version = settings.STRIPE_API_VERSION  # the one this code reads; not whatever the library defaults to
    stripe.max_network_retries = 2  # with idempotency keys, so a retried create creates once
    stripe.default_http_client = stripe.RequestsClient(timeout=10)


def enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)

from django.apps import AppConfig

from billing.stripe_client import configure


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and plans"

    def ready(self):
        configure()

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and plans"

    def ready(self):
        from billing import stripe_api

        stripe_api.configure()

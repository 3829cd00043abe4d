from django.core.management.base import BaseCommand
from django.utils import timezone

from backoffice.quota_alerts import record_reached, send_pending


class Command(BaseCommand):
    help = (
        "E-mail customers whose calls or words reached an alert threshold of the period's quota (run every "
        "5 minutes). Each threshold is recorded once per period before its e-mail: safe to run twice."
    )

    def handle(self, *args, **options):
        reached = record_reached(timezone.now())
        sent = send_pending()
        self.stdout.write(f"{reached} thresholds reached, {sent} alerts sent.")

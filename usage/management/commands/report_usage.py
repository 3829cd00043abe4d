from django.core.management.base import BaseCommand
from django.utils import timezone

from usage.metering import report_words


class Command(BaseCommand):
    help = (
        "Report pay-as-you-go customers' words per finished hour to Stripe as meter events (run hourly). "
        "Safe to run twice or after a crash: identifiers are deterministic and recorded before sending."
    )

    def handle(self, *args, **options):
        sent = report_words(timezone.now())
        self.stdout.write(f"Sent {sent} meter events.")

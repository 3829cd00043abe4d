from django.core.management.base import BaseCommand
from django.utils import timezone

from backoffice.quota_alerts import apply_spend_caps, record_reached, send_pending


class Command(BaseCommand):
    help = (
        "E-mail customers whose calls or words reached an alert threshold of the period's quota (run every "
        "5 minutes). Each threshold is recorded once per period before its e-mail: safe to run twice. Also blocks "
        "(and unblocks) pay-as-you-go customers at their spend cap."
    )

    def handle(self, *args, **options):
        reached = record_reached(timezone.now())
        sent = send_pending()
        blocked, unblocked = apply_spend_caps(timezone.now())
        self.stdout.write(
            f"{reached} thresholds reached, {sent} alerts sent; {blocked} blocked, {unblocked} unblocked at spend caps."
        )

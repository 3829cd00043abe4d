from django.core.management.base import BaseCommand

from billing.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Reconcile with Stripe (run from cron, e.g. every 15 minutes): create missing Stripe customers, "
        "re-read every customer and subscription, process webhook events left unprocessed."
    )

    def handle(self, *args, **options):
        counts = reconcile()
        self.stdout.write(
            f"Created {counts['created']} Stripe customers, synced {counts['synced']}, "
            f"processed {counts['events']} waiting events; {counts['failed']} failed."
        )
        if counts["failed"]:
            raise SystemExit(1)

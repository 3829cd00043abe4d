from django.db import migrations, models


def price_payg(apps, schema_editor):
    """The seeded pay-as-you-go plan's word price ($0.50 per 1,000 words), for spend caps."""
    apps.get_model("billing", "Plan").objects.filter(slug="payg", cents_per_1000_words=None).update(
        cents_per_1000_words=50
    )


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_quota_alerts")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="cents_per_1000_words",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Metered plans: the price of 1,000 words in cents (spend caps count with it).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="customer",
            name="spend_cap_cents",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Pay-as-you-go: the most the customer spends per billing period, in cents.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="customer",
            name="calls_blocked",
            field=models.CharField(
                blank=True,
                choices=[("", "not blocked"), ("spend_cap", "spend cap reached"), ("payment_failed", "payment failed")],
                default="",
                help_text="Why forward-auth refuses every call (set by send_quota_alerts and syncs); empty: not blocked.",
                max_length=20,
            ),
        ),
        migrations.RunPython(price_payg, migrations.RunPython.noop),
    ]

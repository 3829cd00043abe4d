"""The customer (Stripe customer, plan, period) belongs to an organization: each user's becomes their
personal organization's, which has the user's id (accounts 0004). Customer.user goes in 0009."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_organizations"), ("billing", "0007_spend_alerts")]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="organization",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="customer",
                to="accounts.organization",
            ),
        ),
        migrations.RunSQL("UPDATE billing_customer SET organization_id = user_id", migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="customer",
            name="organization",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE, related_name="customer", to="accounts.organization"
            ),
        ),
    ]

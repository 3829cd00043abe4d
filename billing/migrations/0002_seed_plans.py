from django.db import migrations

from billing.plans import seed_plans


def seed(apps, schema_editor):
    seed_plans(apps.get_model("billing", "Plan"), apps.get_model("billing", "EndpointLimit"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]

"""A token's organization and creator replace its user (0004 moved it; usage 0009 stopped watching the column)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_organizations"), ("usage", "0009_organizations_feed")]
    operations = [migrations.RemoveField(model_name="apitoken", name="user")]

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_customer_organization"), ("usage", "0009_organizations_feed")]
    operations = [migrations.RemoveField(model_name="customer", name="user")]

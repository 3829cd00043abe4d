"""The change feed also watches why a customer's calls are blocked (billing migration 0006).

Forward-auth caches `billing_customer.calls_blocked` in each of the account's credentials
(usage/forward_auth.py), so the trigger on billing_customer is recreated with that column.
"""

from django.db import migrations

TRIGGER = """
DROP TRIGGER forward_auth_change ON billing_customer;
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF {columns}
    ON billing_customer FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('user_id');
"""
BEFORE = "plan_id, current_period_start, current_period_end"
AFTER = f"{BEFORE}, calls_blocked"


class Migration(migrations.Migration):
    dependencies = [("usage", "0007_token_restrictions_feed"), ("billing", "0006_calls_blocked")]
    operations = [migrations.RunSQL(TRIGGER.format(columns=AFTER), reverse_sql=TRIGGER.format(columns=BEFORE))]

"""The change feed also watches a token's restrictions (accounts migration 0003).

Forward-auth caches them in the token's credential (usage/forward_auth.py), so a
write to them must name the token's prefix in forward_auth_change like any
other change of a credential: the trigger on accounts_apitoken is recreated with
the new columns (its function already names OLD.prefix on every update).
"""

from django.db import migrations

TRIGGER = """
DROP TRIGGER forward_auth_change ON accounts_apitoken;
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF {columns}
    ON accounts_apitoken FOR EACH ROW EXECUTE FUNCTION forward_auth_token_changed();
"""
BEFORE = "prefix, digest, revoked_at, user_id"
AFTER = f"{BEFORE}, allowed_endpoints, allowed_networks, expires_on, per_minute"


class Migration(migrations.Migration):
    dependencies = [("usage", "0006_change_feed"), ("accounts", "0003_token_restrictions")]
    operations = [migrations.RunSQL(TRIGGER.format(columns=AFTER), reverse_sql=TRIGGER.format(columns=BEFORE))]

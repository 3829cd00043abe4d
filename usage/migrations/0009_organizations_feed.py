"""The change feed follows tokens into organizations (accounts 0004, billing 0008).

A credential now holds the token's organization (the account), its creator (X-User-Id)
and the organization's customer: the token trigger watches organization_id and
created_by_id instead of user_id, an organization's is_active replaces its user's,
and a customer names its tokens through organization_id.
"""

from django.db import migrations

FORWARD = """
DROP TRIGGER forward_auth_change ON accounts_apitoken;
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF prefix, digest, revoked_at,
    organization_id, created_by_id, allowed_endpoints, allowed_networks, expires_on, per_minute
    ON accounts_apitoken FOR EACH ROW EXECUTE FUNCTION forward_auth_token_changed();

-- An organization or its customer changed: every token of that organization. TG_ARGV[0] names its id column.
CREATE OR REPLACE FUNCTION forward_auth_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO forward_auth_change (prefix)
    SELECT prefix FROM accounts_apitoken
    WHERE organization_id = (to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END) ->> TG_ARGV[0])::bigint;
    RETURN NULL;
END $$;

DROP TRIGGER forward_auth_change ON accounts_user;
CREATE TRIGGER forward_auth_change AFTER DELETE OR UPDATE OF is_active
    ON accounts_organization FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('id');
DROP TRIGGER forward_auth_change ON billing_customer;
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE
    OR UPDATE OF plan_id, current_period_start, current_period_end, calls_blocked, organization_id
    ON billing_customer FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('organization_id');
"""


BACKWARD = """
CREATE OR REPLACE FUNCTION forward_auth_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO forward_auth_change (prefix)
    SELECT prefix FROM accounts_apitoken
    WHERE user_id = (to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END) ->> TG_ARGV[0])::bigint;
    RETURN NULL;
END $$;
DROP TRIGGER forward_auth_change ON accounts_apitoken;
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF prefix, digest, revoked_at, user_id,
    allowed_endpoints, allowed_networks, expires_on, per_minute
    ON accounts_apitoken FOR EACH ROW EXECUTE FUNCTION forward_auth_token_changed();
DROP TRIGGER forward_auth_change ON accounts_organization;
CREATE TRIGGER forward_auth_change AFTER DELETE OR UPDATE OF is_active
    ON accounts_user FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('id');
DROP TRIGGER forward_auth_change ON billing_customer;
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE
    OR UPDATE OF plan_id, current_period_start, current_period_end, calls_blocked
    ON billing_customer FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('user_id');
"""


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0008_calls_blocked_feed"),
        ("accounts", "0004_organizations"),
        ("billing", "0008_customer_organization"),
    ]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

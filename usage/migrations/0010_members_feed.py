"""Forward-auth refuses the tokens of an organization with no active member (usage/forward_auth.py):
a user deactivated or deleted, the last member removed. So the change feed also watches who is
an active member: a user's is_active names the tokens of their organizations, and a membership
added or removed (a deleted user's included) the tokens of its organization.

A row moved to another organization (a customer reassigned in the admin) now names the tokens of
both: the one it left keeps no stale plan."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION forward_auth_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO forward_auth_change (prefix)
    SELECT prefix FROM accounts_apitoken
    WHERE organization_id IN ((to_jsonb(OLD) ->> TG_ARGV[0])::bigint, (to_jsonb(NEW) ->> TG_ARGV[0])::bigint);
    RETURN NULL;  -- OLD is NULL on INSERT, NEW on DELETE
END $$;

CREATE FUNCTION forward_auth_member_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO forward_auth_change (prefix)
    SELECT token.prefix FROM accounts_apitoken AS token
    JOIN accounts_membership AS membership ON membership.organization_id = token.organization_id
    WHERE membership.user_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER forward_auth_change AFTER UPDATE OF is_active
    ON accounts_user FOR EACH ROW EXECUTE FUNCTION forward_auth_member_changed();
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF organization_id, user_id
    ON accounts_membership FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('organization_id');
"""
BACKWARD = """
DROP TRIGGER forward_auth_change ON accounts_membership;
DROP TRIGGER forward_auth_change ON accounts_user;
DROP FUNCTION forward_auth_member_changed();
"""


class Migration(migrations.Migration):
    dependencies = [("usage", "0009_organizations_feed"), ("accounts", "0005_tokens_without_user")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

"""Forward-auth's change feed instead of one version number (usage/forward_auth.py).

A row per token prefix whose credential a write may have changed (the token
itself, its account, its customer's plan or billing period), and a row without
a prefix when plans or endpoint limits change; written by triggers in the
writing transaction, so bulk updates, admin actions and raw SQL are caught.
Each process forgets just those credentials: the work per change does not grow
with the number of tokens. Rows carry their transaction id, by which readers
make sure a late-committing change is never skipped.
"""

from django.db import migrations

FORWARD = """
CREATE TABLE forward_auth_change (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    prefix text,  -- NULL: the plans changed
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX forward_auth_change_xid ON forward_auth_change (xid);
CREATE INDEX forward_auth_change_changed_at ON forward_auth_change (changed_at);

CREATE FUNCTION forward_auth_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO forward_auth_change (prefix) VALUES (OLD.prefix);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.prefix <> OLD.prefix) THEN
        INSERT INTO forward_auth_change (prefix) VALUES (NEW.prefix);
    END IF;
    RETURN NULL;
END $$;

-- An account or a customer changed: every token of that account. TG_ARGV[0] names its user id column.
CREATE FUNCTION forward_auth_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO forward_auth_change (prefix)
    SELECT prefix FROM accounts_apitoken
    WHERE user_id = (to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END) ->> TG_ARGV[0])::bigint;
    RETURN NULL;
END $$;

CREATE FUNCTION forward_auth_plans_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO forward_auth_change (prefix) VALUES (NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF prefix, digest, revoked_at, user_id
    ON accounts_apitoken FOR EACH ROW EXECUTE FUNCTION forward_auth_token_changed();
CREATE TRIGGER forward_auth_change AFTER DELETE OR UPDATE OF is_active
    ON accounts_user FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('id');
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE OF plan_id, current_period_start, current_period_end
    ON billing_customer FOR EACH ROW EXECUTE FUNCTION forward_auth_account_changed('user_id');
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE
    ON billing_plan FOR EACH STATEMENT EXECUTE FUNCTION forward_auth_plans_changed();
CREATE TRIGGER forward_auth_change AFTER INSERT OR DELETE OR UPDATE
    ON billing_endpointlimit FOR EACH STATEMENT EXECUTE FUNCTION forward_auth_plans_changed();

DROP TRIGGER forward_auth_version ON accounts_apitoken;
DROP TRIGGER forward_auth_version ON accounts_user;
DROP TRIGGER forward_auth_version ON billing_plan;
DROP TRIGGER forward_auth_version ON billing_endpointlimit;
DROP TRIGGER forward_auth_version ON billing_customer;
DROP FUNCTION bump_forward_auth_version();
DROP TABLE forward_auth_version;
"""


class Migration(migrations.Migration):
    dependencies = [("usage", "0005_hardened_ingest")]
    operations = [migrations.RunSQL(FORWARD)]

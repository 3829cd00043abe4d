"""A sequence bumped by every write that can change a forward-auth decision.

Each process polls it (one tiny query a second, off the request path) and
reloads its snapshot of tokens and plans when it moved. Triggers catch every
write, admin bulk actions and raw SQL included.
"""

from django.db import migrations

WATCHED = {
    "accounts_apitoken": "INSERT OR DELETE OR UPDATE OF prefix, digest, revoked_at, user_id",
    "accounts_user": "DELETE OR UPDATE OF is_active",
    "billing_plan": "INSERT OR DELETE OR UPDATE",
    "billing_endpointlimit": "INSERT OR DELETE OR UPDATE",
    "billing_customer": "INSERT OR DELETE OR UPDATE OF plan_id, current_period_start, current_period_end",
}

CREATE = """
CREATE SEQUENCE forward_auth_version;
CREATE FUNCTION bump_forward_auth_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('forward_auth_version');
    RETURN NULL;
END $$;
""" + "".join(
    f"CREATE TRIGGER forward_auth_version AFTER {events} ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION bump_forward_auth_version();\n"
    for table, events in WATCHED.items()
)

DROP = (
    "".join(f"DROP TRIGGER forward_auth_version ON {table};\n" for table in WATCHED)
    + """
DROP FUNCTION bump_forward_auth_version();
DROP SEQUENCE forward_auth_version;
"""
)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial"), ("billing", "0002_seed_plans")]
    operations = [migrations.RunSQL(CREATE, DROP)]

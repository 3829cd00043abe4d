"""The forward-auth version as a one-row table instead of a sequence.

A sequence moves at once, before the writing transaction commits: a process
could read the new version, load the snapshot before the commit and keep the
old state for good. A row updated by the same transaction becomes visible with
the change it counts.
"""

from django.db import migrations

FORWARD = """
CREATE TABLE forward_auth_version (id boolean PRIMARY KEY DEFAULT true CHECK (id), version bigint NOT NULL);
INSERT INTO forward_auth_version (version) SELECT last_value FROM forward_auth_version_seq;
CREATE OR REPLACE FUNCTION bump_forward_auth_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE forward_auth_version SET version = version + 1;
    RETURN NULL;
END $$;
DROP SEQUENCE forward_auth_version_seq;
"""
BACKWARD = """
CREATE SEQUENCE forward_auth_version_seq;
CREATE OR REPLACE FUNCTION bump_forward_auth_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('forward_auth_version_seq');
    RETURN NULL;
END $$;
DROP TABLE forward_auth_version;
"""


class Migration(migrations.Migration):
    dependencies = [("usage", "0003_api_calls")]
    operations = [
        migrations.RunSQL(
            "ALTER SEQUENCE forward_auth_version RENAME TO forward_auth_version_seq",
            "ALTER SEQUENCE forward_auth_version_seq RENAME TO forward_auth_version",
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]

"""Hardened ingest: dead letters, a database identity for journals, calls let through unchecked.

- `usage_deadletter`: events the database refused for their data, with the error.
- `usage_database`: one random id per database, made here; a journal file names it, so events
  journaled for one database are never replayed into another (a test run's, another `make run`'s).
- `api_calls.unchecked`: calls let through while the rate-limit counters were down
  (FORWARD_AUTH_FAIL_OPEN): recorded and billed, marked.
"""

from django.db import migrations, models

IDENTITY = """
CREATE TABLE usage_database (id uuid PRIMARY KEY);
INSERT INTO usage_database VALUES (gen_random_uuid());
"""
# New stores get the column from usage/sql/api_calls.sql; this adds it to existing ones.
UNCHECKED = "ALTER TABLE api_calls ADD COLUMN IF NOT EXISTS unchecked boolean NOT NULL DEFAULT false"


class Migration(migrations.Migration):
    dependencies = [("usage", "0004_transactional_version")]
    operations = [
        migrations.CreateModel(
            name="DeadLetter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("failed_at", models.DateTimeField(db_index=True)),
                (
                    "event",
                    models.TextField(
                        help_text="The event as JSON (time, account, token, endpoint, method, status, request id, unchecked)."
                    ),
                ),
                ("error", models.TextField()),
            ],
        ),
        migrations.RunSQL(IDENTITY, "DROP TABLE usage_database"),
        migrations.RunSQL(UNCHECKED, "ALTER TABLE api_calls DROP COLUMN unchecked"),
    ]

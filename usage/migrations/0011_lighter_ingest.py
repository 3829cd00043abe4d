"""Cheaper writes of usage events, for the same figures: the index on (account_id, time), which
no query reads (charts, quotas and billing read the aggregates), is dropped; on plain PostgreSQL
the rollup trigger aggregates each batch once, into hours, and the days from those hours
(usage/sql/rollup.sql), instead of reading the batch twice."""

from django.db import migrations


def lighten(apps, schema_editor):
    from usage import store

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS api_calls_account_time")
        if store.mode() == "postgres":
            cursor.execute(store.sql("rollup.sql"))


def restore_index(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("CREATE INDEX IF NOT EXISTS api_calls_account_time ON api_calls (account_id, time DESC)")


class Migration(migrations.Migration):
    dependencies = [("usage", "0010_members_feed")]
    operations = [migrations.RunPython(lighten, restore_index)]

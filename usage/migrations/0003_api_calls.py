"""The usage store (see usage/store.py): a hypertable with continuous aggregates
on TimescaleDB, trigger-kept tables of the same names on plain PostgreSQL."""

from django.db import migrations


def create_store(apps, schema_editor):
    from usage import store

    with schema_editor.connection.cursor() as cursor:
        store.create(cursor)


def drop_store(apps, schema_editor):
    from usage import store

    with schema_editor.connection.cursor() as cursor:
        if store.mode() == "timescaledb":
            cursor.execute("DROP MATERIALIZED VIEW api_calls_daily; DROP MATERIALIZED VIEW api_calls_hourly")
        cursor.execute("DROP TABLE IF EXISTS api_calls_daily, api_calls_hourly, api_calls")
        cursor.execute("DROP FUNCTION IF EXISTS api_calls_rollup()")


class Migration(migrations.Migration):
    atomic = False  # TimescaleDB policies and refreshes refuse some transaction blocks
    dependencies = [("usage", "0002_usage_store")]
    operations = [migrations.RunPython(create_store, drop_store)]

"""The Grafana dashboard is valid and every panel's SQL runs on the aggregates."""

import json
import re

from django.conf import settings
from django.db import connection

DASHBOARD = settings.BASE_DIR / "deploy" / "grafana" / "dashboards" / "usage.json"
MACROS = [
    (r"\$__timeGroupAlias\((\w+), \$__interval\)", r"date_trunc('hour', \1) AS time"),
    (r"\$__timeFilter\(([\w.]+)\)", r"\1 > now() - INTERVAL '7 days'"),
    (r"\$account", "0"),
]


def test_every_panel_query_runs_against_the_aggregates(db):
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["rawSql"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) == len(dashboard["panels"]) == 6
    for sql in queries:
        assert "api_calls_hourly" in sql or "api_calls_daily" in sql  # never the raw events
        for macro, replacement in MACROS:
            sql = re.sub(macro, replacement, sql)
        with connection.cursor() as cursor:
            cursor.execute(sql)

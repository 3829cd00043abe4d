from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from billing.models import Plan
from usage.queries import fetch
from usage.views import quota_use

TODAY_SQL = """
    SELECT coalesce(sum(requests - errors), 0)::bigint AS allowed, coalesce(sum(errors), 0)::bigint AS refused
    FROM api_calls_hourly
    WHERE account_id = %(account)s AND bucket >= %(since)s
"""
RECENT_REFUSALS_SQL = """
    SELECT bucket, endpoint, errors FROM api_calls_hourly
    WHERE account_id = %(account)s AND bucket >= %(since)s AND errors > 0
    ORDER BY bucket DESC, endpoint
    LIMIT 5
"""


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    account = {"account": request.user.pk}
    context = {
        "plan": Plan.objects.of(request.user),
        "quotas": quota_use(request.user, now),
        "today": fetch(TODAY_SQL, {**account, "since": midnight})[0],
        "refusals": fetch(RECENT_REFUSALS_SQL, {**account, "since": now - timedelta(days=7)}),
        "tokens": request.user.tokens.active(),
        "api_base_url": settings.API_BASE_URL,
    }
    return TemplateResponse(request, "dashboard.html", context)

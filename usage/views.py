"""The usage pages: the customer's own, and the same for staff about any customer; the staff overview."""

import csv

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.models import Organization
from accounts.organizations import member_can
from usage.charts import UsageReport, quotas
from usage.queries import DEFAULT_RANGE, RANGES, totals


@member_can("usage")
def usage_page(request: HttpRequest) -> HttpResponse:
    return _usage_page(request, request.organization)


@member_can("usage")
def usage_csv(request: HttpRequest) -> HttpResponse:
    return _usage_csv(request, request.organization)


@staff_member_required
def customer_usage_page(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _usage_page(request, get_object_or_404(Organization, pk=organization_id))


@staff_member_required
def customer_usage_csv(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _usage_csv(request, get_object_or_404(Organization, pk=organization_id))


@staff_member_required
def usage_overview(request: HttpRequest) -> HttpResponse:
    """Staff: totals, top customers, usage and error rates per endpoint."""
    range_ = _range(request)
    if range_ is None:
        return _bad_range(request)
    report = UsageReport(range_, timezone.now())
    window = (report.buckets[0], range_.bucket_end(report.buckets[-1]))
    top = totals(range_, "account", *window, limit=10).rows()
    names = dict(Organization.objects.filter(pk__in=[row["account_id"] for row in top]).values_list("pk", "name"))
    context = {
        "report": report,
        "ranges": RANGES.values(),
        "top": [{**row, "name": names.get(row["account_id"], f"#{row['account_id']}")} for row in top],
        "endpoints": totals(range_, "endpoint", *window).rows(),
    }
    return TemplateResponse(request, "usage/overview.html", context)


def _range(request: HttpRequest):
    return RANGES.get(request.GET.get("range", DEFAULT_RANGE))


def _bad_range(request: HttpRequest) -> HttpResponse:
    message = f"Unknown range; use one of {', '.join(RANGES)}."
    return TemplateResponse(request, "error.html", {"title": "Bad request", "message": message}, status=400)


def _usage_page(request: HttpRequest, account: Organization) -> HttpResponse:
    range_ = _range(request)
    if range_ is None:
        return _bad_range(request)
    now = timezone.now()
    context = {
        "account": account,
        "report": UsageReport(range_, now, account.pk),
        "ranges": RANGES.values(),
        "quotas": quotas(account, now),
    }
    return TemplateResponse(request, "usage/usage.html", context)


def _usage_csv(request: HttpRequest, account: Organization) -> HttpResponse:
    range_ = _range(request)
    if range_ is None:
        return HttpResponse(f"Unknown range; use one of {', '.join(RANGES)}.", status=400, content_type="text/plain")
    report = UsageReport(range_, timezone.now(), account.pk)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="usage-{range_.key}.csv"'
    writer = csv.writer(response)
    writer.writerow(["bucket_start", "endpoint", "requests", "refused", "words", "characters"])
    for row in report.rows:
        text = [csv_text(row["t"].isoformat()), csv_text(row["endpoint"])]
        writer.writerow([*text, row["requests"], row["errors"], row["words"], row["characters"]])
    return response


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell that spreadsheets show as text: one that starts like a formula gets a leading quote.

    Endpoints come from clients' paths; `=HYPERLINK(...)` would otherwise run when
    the export is opened (OWASP, CSV injection).
    """
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value

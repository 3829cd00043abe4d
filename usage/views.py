import csv
import hmac
import re

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import User
from backoffice.json_bodies import Refused, parse_json, problem_response, read_body

from usage.charts import UsageReport, quotas
from usage.forward_auth import Answer, service
from usage.models import Quantity
from usage.queries import DEFAULT_RANGE, RANGES, totals

REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _response(answer: Answer) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, headers=dict(answer.headers))


@csrf_exempt
def forward_auth(request: HttpRequest) -> HttpResponse:
    """Traefik's forwardAuth target. Production serves the same answer from usage/wsgi.py."""
    return _response(service().answer(request.META))


@csrf_exempt
def release_lease(request: HttpRequest) -> HttpResponse:
    return _response(service().release(request.META))


MAX_QUANTITY_ITEMS = 10_000
MAX_QUANTITY = 1_000_000_000
MAX_QUANTITIES_BYTES = 2 * 1024 * 1024  # the largest batch, pretty-printed, is about 1.5 MB


@csrf_exempt
@require_POST
def report_quantities(request: HttpRequest) -> HttpResponse:
    """The model services report words and characters per call: `[{"request_id", "words", "characters"}, ...]`.

    Authenticated by USAGE_SERVICE_TOKEN, not a customer token. Answers 200 only
    once every item is stored (durably: committed); a batch with any invalid
    item is refused whole with the errors per item. Reporting an item twice is
    harmless: the last report wins.
    """
    token = request.headers.get("Authorization", "")
    expected = f"Bearer {settings.USAGE_SERVICE_TOKEN}"
    if not settings.USAGE_SERVICE_TOKEN or not hmac.compare_digest(token.encode(), expected.encode()):
        return problem_response(401, "Invalid service token", "Send the service token as `Authorization: Bearer <token>`.")
    try:
        items = parse_json(read_body(request, MAX_QUANTITIES_BYTES))
    except Refused as refused:
        return refused.response
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_QUANTITY_ITEMS:
        return problem_response(400, "Invalid batch", f"Send a JSON array of 1 to {MAX_QUANTITY_ITEMS} quantities.")
    errors = [error for index, item in enumerate(items) for error in quantity_errors(index, item)]
    if errors:
        return problem_response(400, "Invalid quantities", f"{len(errors)} problem(s); nothing was stored.", errors=errors)
    latest = {item["request_id"]: item for item in items}  # one row per call: the last report in the batch wins
    Quantity.objects.bulk_create(
        [Quantity(request_id=item["request_id"], words=item["words"], characters=item["characters"]) for item in latest.values()],
        update_conflicts=True, unique_fields=["request_id"], update_fields=["words", "characters"],
    )
    return JsonResponse({"stored": len(latest)})


def quantity_errors(index: int, item) -> list[dict]:
    if not isinstance(item, dict):
        return [{"index": index, "field": None, "message": "Each quantity is an object."}]
    errors = []
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        errors.append({"index": index, "field": "request_id", "message": "The X-Request-Id of the call (1 to 64 letters, digits, - or _)."})
    for field in ("words", "characters"):
        value = item.get(field)
        if type(value) is not int or not 0 <= value <= MAX_QUANTITY:
            errors.append({"index": index, "field": field, "message": f"A whole number from 0 to {MAX_QUANTITY}."})
    unknown = set(item) - {"request_id", "words", "characters"}
    if unknown:
        errors.append({"index": index, "field": None, "message": f"Unknown fields: {', '.join(sorted(unknown))}."})
    return errors


# The usage pages: the customer's own, and the same for staff about any customer.


@login_required
def usage_page(request: HttpRequest) -> HttpResponse:
    return _usage_page(request, request.user)


@login_required
def usage_csv(request: HttpRequest) -> HttpResponse:
    return _usage_csv(request, request.user)


@staff_member_required
def customer_usage_page(request: HttpRequest, user_id: int) -> HttpResponse:
    return _usage_page(request, get_object_or_404(User, pk=user_id))


@staff_member_required
def customer_usage_csv(request: HttpRequest, user_id: int) -> HttpResponse:
    return _usage_csv(request, get_object_or_404(User, pk=user_id))


@staff_member_required
def usage_overview(request: HttpRequest) -> HttpResponse:
    """Staff: totals, top customers, usage and error rates per endpoint."""
    range_ = _range(request)
    if range_ is None:
        return _bad_range(request)
    report = UsageReport(range_, timezone.now())
    window = (report.buckets[0], range_.bucket_end(report.buckets[-1]))
    top = totals(range_, "account", *window, limit=10).rows()
    emails = dict(User.objects.filter(pk__in=[row["account_id"] for row in top]).values_list("pk", "email"))
    context = {
        "report": report,
        "ranges": RANGES.values(),
        "top": [{**row, "email": emails.get(row["account_id"], f"#{row['account_id']}")} for row in top],
        "endpoints": totals(range_, "endpoint", *window).rows(),
    }
    return TemplateResponse(request, "usage/overview.html", context)


def _range(request: HttpRequest):
    return RANGES.get(request.GET.get("range", DEFAULT_RANGE))


def _bad_range(request: HttpRequest) -> HttpResponse:
    message = f"Unknown range; use one of {', '.join(RANGES)}."
    return TemplateResponse(request, "error.html", {"title": "Bad request", "message": message}, status=400)


def _usage_page(request: HttpRequest, customer: User) -> HttpResponse:
    range_ = _range(request)
    if range_ is None:
        return _bad_range(request)
    now = timezone.now()
    context = {
        "customer": customer,
        "report": UsageReport(range_, now, customer.pk),
        "ranges": RANGES.values(),
        "quotas": quotas(customer, now),
    }
    return TemplateResponse(request, "usage/usage.html", context)


def _usage_csv(request: HttpRequest, customer: User) -> HttpResponse:
    range_ = _range(request)
    if range_ is None:
        return HttpResponse(f"Unknown range; use one of {', '.join(RANGES)}.", status=400, content_type="text/plain")
    report = UsageReport(range_, timezone.now(), customer.pk)
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

"""The machine endpoints: Traefik's forward-auth and lease release, the model services' quantities.

Apart from the pages: no session, no CSRF, no HTML; errors are RFC 9457 problems.
"""

import hmac
import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.json_bodies import Refused, parse_json, problem_response, read_body
from usage.forward_auth import Answer, service
from usage.models import Quantity

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
        return problem_response(
            401, "Invalid service token", "Send the service token as `Authorization: Bearer <token>`."
        )
    try:
        items = parse_json(read_body(request, MAX_QUANTITIES_BYTES))
    except Refused as refused:
        return refused.response
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_QUANTITY_ITEMS:
        return problem_response(400, "Invalid batch", f"Send a JSON array of 1 to {MAX_QUANTITY_ITEMS} quantities.")
    errors = [error for index, item in enumerate(items) for error in quantity_errors(index, item)]
    if errors:
        return problem_response(
            400, "Invalid quantities", f"{len(errors)} problem(s); nothing was stored.", errors=errors
        )
    latest = {item["request_id"]: item for item in items}  # one row per call: the last report in the batch wins
    Quantity.objects.bulk_create(
        [
            Quantity(request_id=item["request_id"], words=item["words"], characters=item["characters"])
            for item in latest.values()
        ],
        update_conflicts=True,
        unique_fields=["request_id"],
        update_fields=["words", "characters"],
    )
    return JsonResponse({"stored": len(latest)})


def quantity_errors(index: int, item) -> list[dict]:
    if not isinstance(item, dict):
        return [{"index": index, "field": None, "message": "Each quantity is an object."}]
    errors = []
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        errors.append(
            {
                "index": index,
                "field": "request_id",
                "message": "The X-Request-Id of the call (1 to 64 letters, digits, - or _).",
            }
        )
    for field in ("words", "characters"):
        value = item.get(field)
        if type(value) is not int or not 0 <= value <= MAX_QUANTITY:
            errors.append({"index": index, "field": field, "message": f"A whole number from 0 to {MAX_QUANTITY}."})
    unknown = set(item) - {"request_id", "words", "characters"}
    if unknown:
        errors.append({"index": index, "field": None, "message": f"Unknown fields: {', '.join(sorted(unknown))}."})
    return errors

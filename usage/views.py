from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from usage.forward_auth import Answer, service


def _response(answer: Answer) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, headers=dict(answer.headers))


@csrf_exempt
def forward_auth(request: HttpRequest) -> HttpResponse:
    """Traefik's forwardAuth target. Production serves the same answer from usage/wsgi.py."""
    return _response(service().answer(request.META))


@csrf_exempt
def release_lease(request: HttpRequest) -> HttpResponse:
    return _response(service().release(request.META))

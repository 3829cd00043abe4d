"""JSON bodies that other machines POST: Stripe's webhooks, the model services' quantities.

A body is refused with an RFC 9457 problem, never a 500: 413 past the
endpoint's size bound, 400 when it is not JSON or when PostgreSQL could not
store it (jsonb and text refuse \\u0000 and unpaired surrogates, jsonb refuses
NaN and Infinity), and 400 when it nests deeper than any real document does
(json.loads raises RecursionError on 100k levels; a few hundred already break
stripe-python's objects and Django's JSONField encoder).
"""

import json
import math

from django.http import HttpRequest, HttpResponse

from core.problems import CONTENT_TYPE, problem_body

MAX_DEPTH = 32  # Stripe's events nest about 10 levels, quantities 2


class Refused(Exception):
    """A body answered with a problem."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.response = problem_response(status, title, detail)


def problem_response(status: int, title: str, detail: str, **extra) -> HttpResponse:
    return HttpResponse(problem_body(status, title, detail, **extra), status=status, content_type=CONTENT_TYPE)


def read_body(request: HttpRequest, max_bytes: int) -> bytes:
    """The body, bounded by what is read rather than by Content-Length alone.

    request.body would apply DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, unless a
    setting turns it off) and answer an HTML 400; each endpoint here has its own bound.
    """
    body = request.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise Refused(413, "Body too large", f"The body must be at most {max_bytes} bytes.")
    return body


def parse_json(body: bytes):
    """The JSON document in `body`, if PostgreSQL can store it as it is."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise Refused(400, "Malformed JSON", f"The JSON nests deeper than {MAX_DEPTH} levels.") from None
    except ValueError:  # UnicodeDecodeError and oversized integers included
        raise Refused(400, "Malformed JSON", "The body is not JSON (UTF-8).") from None
    if reason := _unstorable(document):
        raise Refused(400, "Unstorable JSON", reason)
    return document


def _unstorable(document) -> str | None:
    """Why the document cannot be stored, or None. Iterative: no recursion on what we refuse."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value or not _is_utf8(value):
                return "Strings cannot hold \\u0000 or unpaired surrogates."
        elif isinstance(value, float) and not math.isfinite(value):
            return "Numbers must be finite (no NaN, Infinity or 1e999)."
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return f"The JSON nests deeper than {MAX_DEPTH} levels."
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True

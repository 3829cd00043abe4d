"""RFC 9457 problem details: the body of every error answered to a machine (forward-auth, webhooks, quantities)."""

import json

CONTENT_TYPE = "application/problem+json"


def problem_body(status: int, title: str, detail: str, **extra) -> bytes:
    body = {
        "type": f"about:blank#{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    return json.dumps(body | extra).encode()

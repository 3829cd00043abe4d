"""The anchor's logic (shared/anchors/seed-go) as a bare WSGI callable: a counter per
token and minute in a dict, LIMIT a minute, 429 above. Served by granian like ours,
it is what Python under granian reaches on this machine with no work of ours at all:
the ceiling against which bench/forward_auth's ratios are to be read."""

import os
import threading
import time

limit = int(os.environ.get("LIMIT", 10))
counts: dict[str, int] = {}
lock = threading.Lock()


def application(environ, start_response):
    key = f"{environ.get('HTTP_AUTHORIZATION', '')}/{time.localtime().tm_min}"
    with lock:
        count = counts.get(key, 0)
        if count < limit:
            counts[key] = count + 1
    start_response("200 OK" if count < limit else "429 Too Many Requests", [("Content-Length", "0")])
    return [b""]

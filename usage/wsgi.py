"""The lean entry point: forward-auth answered without Django's request machinery.

Wraps the Django WSGI application; the forward-auth paths go straight to the
shared `ForwardAuth` service (the same code the Django views call), everything
else to Django.
"""

import gc

from usage.forward_auth import service


def with_forward_auth(django_app):
    auth = service()
    auth.start()  # load tokens and plans now, not on the first API call
    # Move everything loaded so far out of the collector's sight: full collections
    # then scan only what requests create, not all of Django (tens of ms each).
    gc.freeze()
    routes = {"/forward-auth": auth.answer, "/forward-auth/release": auth.release}

    def application(environ, start_response):
        handler = routes.get(environ.get("PATH_INFO"))
        if handler is None:
            return django_app(environ, start_response)
        answer = handler(environ)
        start_response(answer.status_line, [*answer.headers, ("Content-Length", str(len(answer.body)))])
        return [answer.body]

    return application

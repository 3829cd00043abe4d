"""The Stripe API for tests: localstripe (a real, stateful fake over HTTP), plus what it lacks.

localstripe has no Prices, Checkout, Customer Portal or Billing Meters. This
server sits in front of it at the HTTP boundary: it answers those endpoints
itself, turns `price` into localstripe's `plan` (our prices are created there
as plans with the same ids) and `proration_behavior` into its `prorate`, and
passes everything else through unchanged. So
billing/ runs exactly as against Stripe.
"""

import itertools
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeStripe:
    def __init__(self, localstripe_url: str):
        self.localstripe = localstripe_url
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.reset()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.checkout_sessions: dict[str, dict] = {}
        self.meter_events: dict[str, dict] = {}  # by identifier: Stripe keeps one per identifier
        self.meter_event_posts = 0
        self.portal_return_url = ""
        self._ids = itertools.count(1)

    def complete_checkout(self, session_id: str) -> dict:
        """What Stripe does when the customer pays: the subscription starts, the session completes."""
        session = self.checkout_sessions[session_id]
        card = self.localstripe_call(
            "POST",
            "/v1/tokens",
            {
                "card[number]": "4242424242424242",
                "card[exp_month]": "12",
                "card[exp_year]": "2030",
                "card[cvc]": "123",
            },
        )
        self.localstripe_call("POST", f"/v1/customers/{session['customer']}/sources", {"source": card["id"]})
        subscription = self.localstripe_call(
            "POST", "/v1/subscriptions", {"customer": session["customer"], "items[0][plan]": session["price"]}
        )
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        return session

    def localstripe_call(self, method: str, path: str, form: dict | None = None) -> dict:
        body = urllib.parse.urlencode(form or {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            self.localstripe + path, data=body, method=method, headers={"Authorization": "Bearer sk_test_backoffice"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

            def _route(self, method: str):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = dict(urllib.parse.parse_qsl(body.decode()))
                path = self.path.split("?")[0]
                if method == "POST" and path == "/v1/checkout/sessions":
                    session_id = f"cs_test_{next(fake._ids)}"
                    session = {
                        "id": session_id,
                        "object": "checkout.session",
                        "mode": form["mode"],
                        "status": "open",
                        "customer": form["customer"],
                        "price": form["line_items[0][price]"],
                        "subscription": None,
                        "success_url": form["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id),
                        "url": f"{fake.url}/pay/{session_id}",
                    }
                    fake.checkout_sessions[session_id] = session
                    return self._json(200, session)
                if method == "GET" and path.startswith("/pay/"):  # the hosted Checkout page: the customer pays
                    session = fake.complete_checkout(path.rsplit("/", 1)[1])
                    return self._redirect(session["success_url"])
                if method == "GET" and path.startswith("/portal/"):  # the hosted Portal: back to the app
                    return self._redirect(fake.portal_return_url)
                if method == "GET" and path.startswith("/v1/checkout/sessions/"):
                    session = fake.checkout_sessions.get(path.rsplit("/", 1)[1])
                    return (
                        self._json(200, session)
                        if session
                        else self._json(404, {"error": {"message": "No such session"}})
                    )
                if method == "POST" and path == "/v1/billing_portal/sessions":
                    fake.portal_return_url = form["return_url"]
                    return self._json(
                        200,
                        {
                            "id": "bps_test",
                            "object": "billing_portal.session",
                            "customer": form["customer"],
                            "url": f"{fake.url}/portal/{form['customer']}",
                        },
                    )
                if method == "POST" and path == "/v1/billing/meter_events":
                    fake.meter_event_posts += 1
                    event = fake.meter_events.setdefault(
                        form["identifier"],
                        {
                            "object": "billing.meter_event",
                            "event_name": form["event_name"],
                            "identifier": form["identifier"],
                            "customer": form["payload[stripe_customer_id]"],
                            "value": form["payload[value]"],
                            "timestamp": int(form["timestamp"]),
                        },
                    )
                    return self._json(200, event)
                if "items[0][price]" in form or "proration_behavior" in form:
                    # Prices: localstripe knows them as plans of the same id; proration: its older flag.
                    if "items[0][price]" in form:
                        form["items[0][plan]"] = form.pop("items[0][price]")
                    if "proration_behavior" in form:
                        form["prorate"] = "false" if form.pop("proration_behavior") == "none" else "true"
                    body = urllib.parse.urlencode(form).encode()
                self._forward(method, body)

            def _forward(self, method: str, body: bytes):
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() in ("authorization", "content-type", "idempotency-key", "stripe-version")
                }
                request = urllib.request.Request(
                    fake.localstripe + self.path,
                    data=body if method == "POST" else None,
                    method=method,
                    headers=headers,
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
                self._raw(status, payload)

            def _redirect(self, url: str):
                self.send_response(303)
                self.send_header("Location", url)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, status: int, data: dict):
                self._raw(status, json.dumps(data).encode())

            def _raw(self, status: int, payload: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler

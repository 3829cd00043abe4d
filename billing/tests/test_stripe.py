"""Billing against a real Stripe fake over HTTP (localstripe, plus billing/tests/fake_stripe.py)."""

import hashlib
import hmac
import json
import time
import urllib.request
from datetime import timedelta

import pytest
import stripe
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken, User
from billing.customers import ensure_stripe_customer, sync
from billing.models import Customer, MeterReport, Plan, WebhookEvent
from billing.reconcile import reconcile
from billing.stripe_client import configure
from billing.tests.helpers import subscribe
from billing.tests.stripe_fixtures import WEBHOOK_SECRET
from tests.helpers import PASSWORD
from usage.forward_auth import ForwardAuth
from usage.limiter import MemoryCounters
from usage.metering import report_words
from usage.models import Quantity
from usage.recorder import UsageRecorder

WEBHOOK = "/stripe/webhook"


def sign_up(client, email="new@example.com"):
    response = client.post(reverse("signup"), {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    return User.objects.get(email=email)


def signed(event: dict, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    return signed_body(json.dumps(event), timestamp, secret)


def signed_body(body: str, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    """The test client's arguments for a POST of `body` signed as Stripe signs webhooks."""
    timestamp = timestamp or int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"data": body, "content_type": "application/json", "HTTP_STRIPE_SIGNATURE": f"t={timestamp},v1={signature}"}


def event(event_id: str, type_: str, obj: dict) -> dict:
    return {"id": event_id, "object": "event", "type": type_, "created": int(time.time()), "data": {"object": obj}}


# Customers.


def test_sign_up_creates_the_stripe_customer_and_caches_its_json(client, db, stripe_server):
    user = sign_up(client)
    organization = user.default_organization()
    customer = organization.customer
    assert customer.stripe_id.startswith("cus_")
    assert (
        customer.stripe_customer["email"] == "new@example.com" and customer.stripe_customer["name"] == "new@example.com"
    )
    assert customer.stripe_customer["metadata"] == {"organization_id": str(organization.pk)}
    assert customer.plan == Plan.objects.default()
    assert stripe.Customer.retrieve(customer.stripe_id).email == "new@example.com"


def test_sign_up_succeeds_while_stripe_is_down_and_reconciliation_creates_one_customer(
    client, db, stripe_down, request, staff_user
):
    user = sign_up(client)
    customer = user.default_organization().customer
    assert customer.stripe_id == "" and customer.plan == Plan.objects.default()
    request.getfixturevalue("stripe_server")  # Stripe is back
    reconcile()
    reconcile()
    customer = Customer.objects.get(organization=user.default_organization())
    assert customer.stripe_id
    emails = [c.email for c in stripe.Customer.list(limit=100).auto_paging_iter()]
    assert emails == [user.email]  # once, and none for staff's own organization


# Webhooks: signature, storage, idempotence, ordering.


def test_a_subscription_event_applies_the_paid_plan(client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscription = subscribe(stripe_customer, "price_starter_monthly")
    response = client.post(WEBHOOK, **signed(event("evt_1", "customer.subscription.created", subscription)))
    assert response.status_code == 200
    stripe_customer.refresh_from_db()
    assert stripe_customer.plan.slug == "starter"
    assert stripe_customer.stripe_subscription["id"] == subscription["id"]
    assert stripe_customer.current_period_end > timezone.now()
    assert (
        stripe_customer.stripe_invoices and stripe_customer.stripe_invoices[0]["customer"] == stripe_customer.stripe_id
    )
    assert WebhookEvent.objects.get(id="evt_1").processed_at is not None


def test_an_event_delivered_twice_is_processed_once(client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    payload = event("evt_twice", "customer.updated", {"object": "customer", "id": stripe_customer.stripe_id})
    assert client.post(WEBHOOK, **signed(payload)).status_code == 200
    first_sync = Customer.objects.get(pk=stripe_customer.pk).synced_at
    assert client.post(WEBHOOK, **signed(payload)).status_code == 200
    assert Customer.objects.get(pk=stripe_customer.pk).synced_at == first_sync
    assert WebhookEvent.objects.filter(id="evt_twice").count() == 1


def test_events_out_of_order_leave_the_current_state(client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscription = subscribe(stripe_customer, "price_pro_monthly")
    created = event("evt_a", "customer.subscription.created", subscription)
    stripe.Subscription.cancel(subscription["id"])
    deleted = event("evt_b", "customer.subscription.deleted", {**subscription, "status": "canceled"})
    client.post(WEBHOOK, **signed(deleted))
    client.post(WEBHOOK, **signed(created))  # late: it must not bring Pro back
    stripe_customer.refresh_from_db()
    assert stripe_customer.subscription_status == "canceled"
    assert stripe_customer.plan == Plan.objects.default()


@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"secret": "whsec_forged"}, 400),
        ({"timestamp": int(time.time()) - 3600}, 400),  # a replayed old event
    ],
)
def test_forged_or_stale_signatures_are_refused(client, stripe_server, customer, kwargs, status):
    payload = event("evt_bad", "customer.updated", {"object": "customer", "id": "cus_x"})
    assert client.post(WEBHOOK, **signed(payload, **kwargs)).status_code == status
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    "body", ["not json", "", "{}", "[1, 2]", '{"id": "evt_x", "type": "customer.updated", "data": [1]}']
)
def test_malformed_bodies_get_400(client, db, stripe_server, body):
    response = client.post(WEBHOOK, **signed_body(body))
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


CUSTOMER = {"object": "customer", "id": "cus_x"}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(event("evt_deep", "customer.updated", CUSTOMER))[:-2] + f', "deep": {deep(100_000)}}}}}',
        json.dumps(event("evt_deepish", "customer.updated", CUSTOMER))[:-2] + f', "deep": {deep(900)}}}}}',
        json.dumps(event("evt_" + "x" * 146, "customer.updated", CUSTOMER)),  # ids are at most 100 characters
        json.dumps(
            event("evt_nul", "customer.updated", {"object": "customer", "id": "cus_\x00"})
        ),  # jsonb refuses \u0000
        json.dumps(event("evt_nul_key", "customer.updated", {**CUSTOMER, "metadata": {"a\x00": "b"}})),
        json.dumps(event("evt_surrogate", "customer.updated", {**CUSTOMER, "name": "\ud800"})),  # not UTF-8
        json.dumps(event("evt_nan", "customer.updated", {**CUSTOMER, "balance": float("nan")})),  # not JSON for jsonb
        json.dumps(event("evt_huge", "customer.updated", CUSTOMER))[:-2] + ', "balance": 1e999}}',
    ],
    ids=["deep", "nested-900-levels", "long-id", "nul", "nul-key", "surrogate", "nan", "infinity"],
)
def test_signed_bodies_that_cannot_be_stored_get_a_400_problem_and_store_nothing(client, db, stripe_server, body):
    response = client.post(WEBHOOK, **signed_body(body))
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"]
    assert not WebhookEvent.objects.exists()


def test_a_body_over_the_size_limit_gets_413(client, db, stripe_server):
    padded = event("evt_big", "customer.updated", {**CUSTOMER, "padding": "x" * 1_048_576})
    response = client.post(WEBHOOK, **signed(padded))
    assert response.status_code == 413 and response["Content-Type"] == "application/problem+json"
    assert "1048576 bytes" in response.json()["detail"]
    assert not WebhookEvent.objects.exists()


def test_a_missing_signature_gets_400(client, db, stripe_server):
    assert client.post(WEBHOOK, "{}", content_type="application/json").status_code == 400


def test_unknown_event_types_are_acknowledged_and_ignored(client, db, stripe_server):
    response = client.post(WEBHOOK, **signed(event("evt_other", "payout.created", {"object": "payout"})))
    assert response.status_code == 200 and not WebhookEvent.objects.exists()


def test_an_event_that_cannot_be_processed_waits_for_reconciliation(client, stripe_server, customer, settings):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscription = subscribe(stripe_customer, "price_starter_monthly")
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable while the event arrives
    configure()
    stripe.max_network_retries = 0
    assert (
        client.post(WEBHOOK, **signed(event("evt_later", "customer.subscription.created", subscription))).status_code
        == 200
    )
    stored = WebhookEvent.objects.get(id="evt_later")
    assert stored.processed_at is None and stored.error
    settings.STRIPE_API_BASE = stripe_server.url
    configure()
    reconcile()
    assert WebhookEvent.objects.get(id="evt_later").processed_at is not None
    assert Customer.objects.get(pk=stripe_customer.pk).plan.slug == "starter"


def test_an_event_failing_for_any_reason_is_recorded_and_the_others_are_processed(stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscription = subscribe(stripe_customer, "price_starter_monthly")
    odd = {"id": "evt_odd", "type": "customer.updated"}  # say, stored by an older version, without its data
    for stored in [odd, event("evt_fine", "customer.subscription.created", subscription)]:
        WebhookEvent.objects.create(id=stored["id"], type=stored["type"], payload=stored)
    reconcile()
    odd = WebhookEvent.objects.get(id="evt_odd")
    assert odd.processed_at is None and odd.error == "KeyError: 'data'"
    assert WebhookEvent.objects.get(id="evt_fine").processed_at is not None
    assert Customer.objects.get(pk=stripe_customer.pk).plan.slug == "starter"


def test_stripe_is_asked_in_the_api_version_the_code_reads(stripe_server, settings):
    assert stripe.api_version == settings.STRIPE_API_VERSION


@pytest.fixture
def webhooks_to_live_server(live_server, localstripe):
    """localstripe delivers its events to the live endpoint, for this test only."""

    def register(url: str) -> None:
        data = f"url={url}&secret={WEBHOOK_SECRET}".encode()
        urllib.request.urlopen(
            urllib.request.Request(f"{localstripe}/_config/webhooks/backoffice", method="POST", data=data)
        )

    register(f"{live_server.url}{WEBHOOK}")
    yield
    register("http://127.0.0.1:9/")  # localstripe cannot forget a webhook: point it nowhere


@pytest.mark.django_db(transaction=True)
def test_localstripe_delivers_signed_webhooks_to_the_live_endpoint(webhooks_to_live_server, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscribe(stripe_customer, "price_pro_monthly")  # localstripe sends customer.subscription.created about 1 s later
    created = WebhookEvent.objects.filter(type="customer.subscription.created", processed_at__isnull=False)
    deadline = time.monotonic() + 15
    # The events come in any order, and the first may find the subscription not yet paid: the plan
    # is Pro once they have all been processed.
    while not (created.exists() and Customer.objects.get(pk=stripe_customer.pk).plan.slug == "pro"):
        assert time.monotonic() < deadline, list(WebhookEvent.objects.values_list("type", "processed_at", "error"))
        time.sleep(0.2)
    time.sleep(1.5)  # let the events still in flight arrive before the database is flushed


# A plan change reaches the forward-auth limits.


def test_a_downgrade_reaches_the_forward_auth_limits(client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscription = subscribe(stripe_customer, "price_starter_monthly")
    sync(stripe_customer)
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    auth = ForwardAuth(MemoryCounters(), fail_open=False, refresh_seconds=0, lease_ttl=30, recorder=UsageRecorder())
    auth.refresh()
    assert dict(auth.answer({"HTTP_AUTHORIZATION": f"Bearer {secret}"}).headers)["X-Plan"] == "starter"

    stripe.Subscription.cancel(subscription["id"])
    client.post(WEBHOOK, **signed(event("evt_down", "customer.subscription.deleted", subscription)))
    auth.refresh()
    answers = [
        auth.answer({"HTTP_AUTHORIZATION": f"Bearer {secret}", "HTTP_X_FORWARDED_URI": "/v1/en/x"}) for _ in range(3)
    ]
    assert dict(answers[0].headers)["X-Plan"] == "free"
    assert answers[2].status == 429 and json.loads(answers[2].body)["window"] == "concurrency"  # Free: 2 in flight


# Plan changes in the app.


def test_the_first_paid_plan_goes_through_checkout_and_applies_on_return(customer_client, stripe_server, customer):
    response = customer_client.post(reverse("choose_plan", args=["starter"]))
    assert response.status_code == 302 and response["Location"].startswith(f"{stripe_server.url}/pay/cs_test_")
    session = stripe_server.complete_checkout(response["Location"].rsplit("/", 1)[1])
    back = customer_client.get(session["success_url"].replace("http://testserver", ""))
    assert back.status_code == 302
    assert Customer.objects.get(organization=customer.default_organization()).plan.slug == "starter"
    html = customer_client.get(reverse("billing")).content.decode()
    assert "Your plan: Starter" in html and "Welcome to Starter" in html


def test_switching_between_paid_plans_is_confirmed_then_prorated(customer_client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscribe(stripe_customer, "price_starter_monthly")
    sync(stripe_customer)
    response = customer_client.post(reverse("choose_plan", args=["pro"]))
    assert response["Location"] == reverse("confirm_plan", args=["pro"])
    assert "Switch to Pro now" in customer_client.get(response["Location"]).content.decode()
    assert (
        Customer.objects.get(organization=customer.default_organization()).plan.slug == "starter"
    )  # nothing changes before confirming
    customer_client.post(reverse("confirm_plan", args=["pro"]))
    stripe_customer.refresh_from_db()
    assert stripe_customer.plan.slug == "pro"
    assert (
        stripe.Subscription.retrieve(stripe_customer.stripe_subscription["id"])["items"]["data"][0]["plan"]["id"]
        == "price_pro_monthly"
    )


def test_the_portal_is_a_redirect_to_stripe(customer_client, stripe_server, customer):
    response = customer_client.post(reverse("billing_portal"))
    assert response.status_code == 302 and response["Location"].startswith(f"{stripe_server.url}/portal/cus_")


def test_an_htmx_request_to_leave_for_stripe_gets_hx_redirect(customer_client, stripe_server):
    response = customer_client.post(reverse("billing_portal"), HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"].startswith(f"{stripe_server.url}/portal/")


def test_stripe_down_during_a_plan_change_is_said_and_changes_nothing(customer_client, stripe_down, customer):
    response = customer_client.post(reverse("choose_plan", args=["starter"]), follow=True)
    assert "cannot be reached" in response.content.decode()
    assert Customer.objects.get(organization=customer.default_organization()).plan == Plan.objects.default()


def test_the_billing_page_shows_the_cached_invoices(customer_client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscribe(stripe_customer, "price_pro_monthly")
    sync(stripe_customer)
    html = customer_client.get(reverse("billing")).content.decode()
    assert "Invoices" in html and "Your plan: Pro" in html
    invoice = Customer.objects.get(pk=stripe_customer.pk).stripe_invoices[0]
    row = html[html.index(f"<td>{invoice.get('number') or invoice['id']}</td>") :].split("</tr>")[0]
    assert "199.00" in row and "<td>USD</td>" in row and "<td>Paid</td>" in row
    # localstripe's invoices have no hosted page: the row says where to find it instead of a dead link
    assert invoice.get("hosted_invoice_url") is None and "In the portal" in row and "<a " not in row


def test_an_invoice_with_a_hosted_page_links_to_it(customer_client, stripe_server, customer):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscribe(stripe_customer, "price_starter_monthly")
    sync(stripe_customer)
    invoices = stripe_customer.stripe_invoices
    invoices[0]["hosted_invoice_url"] = "https://invoice.stripe.com/i/acct_1/test_1"  # as Stripe returns it
    invoices[0]["status"] = "open"
    Customer.objects.filter(pk=stripe_customer.pk).update(stripe_invoices=invoices)
    html = customer_client.get(reverse("billing")).content.decode()
    assert '<a href="https://invoice.stripe.com/i/acct_1/test_1" rel="noopener">View or pay' in html
    assert "<td>Due</td>" in html and "29.00" in html


# Metered usage.


def test_a_metered_report_run_twice_bills_each_hour_once(stripe_server, customer, tmp_path, usage_store):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscribe(stripe_customer, "price_payg_words")
    switched = timezone.now()
    sync(stripe_customer)
    assert stripe_customer.plan.metered and stripe_customer.metered_since >= switched  # words count from the switch
    now = timezone.now()
    Customer.objects.filter(pk=stripe_customer.pk).update(
        metered_since=now - timedelta(hours=3, minutes=30)
    )  # as if then
    recorder = UsageRecorder(journal_dir=tmp_path)
    for i, hours_ago in enumerate([3, 3, 2, 0]):  # the current hour is not finished: not reported yet
        recorder.record(
            (
                (now - timedelta(hours=hours_ago)).timestamp(),
                customer.default_organization().pk,
                None,
                "/v1/en/generation",
                "POST",
                200,
                f"m{i}",
                False,
            )
        )
        Quantity.objects.create(request_id=f"m{i}", words=100 + i, characters=1)
    assert recorder.flush()

    assert report_words(now) == 2
    assert report_words(now) == 0
    assert sorted(int(e["value"]) for e in stripe_server.meter_events.values()) == [102, 201]
    assert {e["customer"] for e in stripe_server.meter_events.values()} == {stripe_customer.stripe_id}
    assert MeterReport.objects.filter(reported_at__isnull=False).count() == 2

    MeterReport.objects.update(reported_at=None)  # a crash after sending, before recording: re-sent, not re-billed
    assert report_words(now) == 2
    assert len(stripe_server.meter_events) == 2 and stripe_server.meter_event_posts == 4


def pay_as_you_go(customer, since: timedelta) -> Customer:
    """The customer on pay-as-you-go at Stripe since `since` ago (its period and metered words start then)."""
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    subscribe(stripe_customer, "price_payg_words")
    sync(stripe_customer)
    Customer.objects.filter(pk=stripe_customer.pk).update(
        metered_since=timezone.now() - since, current_period_start=timezone.now() - since
    )
    stripe_customer.refresh_from_db()
    return stripe_customer


def generation_call(recorder: UsageRecorder, moment, account: int, request_id: str) -> None:
    recorder.record((moment.timestamp(), account, None, "/v1/en/generation", "POST", 200, request_id, False))


def test_words_arriving_after_their_hour_was_reported_are_billed_once_as_a_delta(
    stripe_server, customer, tmp_path, usage_store
):
    stripe_customer = pay_as_you_go(customer, timedelta(hours=3))
    now = timezone.now()
    hour = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    recorder = UsageRecorder(journal_dir=tmp_path)
    for request_id in ("on-time", "late", "later"):
        generation_call(recorder, hour + timedelta(minutes=5), customer.default_organization().pk, request_id)
    Quantity.objects.create(request_id="on-time", words=100, characters=1)
    assert recorder.flush()
    assert report_words(now) == 1

    Quantity.objects.create(request_id="late", words=40, characters=1)  # after the hour was reported
    assert recorder.flush()
    assert report_words(now) == 1
    assert report_words(now) == 0  # a second run finds nothing new
    Quantity.objects.create(request_id="later", words=2, characters=1)
    assert recorder.flush()
    assert report_words(now) == 1

    first = f"words-{stripe_customer.stripe_id}-{hour:%Y%m%dT%H}"
    events = stripe_server.meter_events
    assert {identifier: int(e["value"]) for identifier, e in events.items()} == {
        first: 100,
        f"{first}-1": 40,
        f"{first}-2": 2,
    }
    assert {e["timestamp"] for e in events.values()} == {int(hour.timestamp())}
    assert stripe_server.meter_event_posts == 3

    MeterReport.objects.filter(sequence=2).update(reported_at=None)  # a crash after sending: re-sent, not re-billed
    assert report_words(now) == 1
    assert len(events) == 3 and sum(int(e["value"]) for e in events.values()) == 142


def test_late_words_of_an_hour_before_the_current_period_are_dated_in_the_current_one(
    stripe_server, customer, tmp_path, usage_store
):
    stripe_customer = pay_as_you_go(customer, timedelta(hours=4))
    now = timezone.now()
    hour = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    recorder = UsageRecorder(journal_dir=tmp_path)
    generation_call(recorder, hour, customer.default_organization().pk, "on-time")
    generation_call(recorder, hour, customer.default_organization().pk, "late")
    Quantity.objects.create(request_id="on-time", words=10, characters=1)
    assert recorder.flush()
    assert report_words(now) == 1

    period_start = hour + timedelta(hours=1)  # the period that hour belonged to ended since: its invoice is final
    Customer.objects.filter(pk=stripe_customer.pk).update(current_period_start=period_start)
    Quantity.objects.create(request_id="late", words=7, characters=1)
    assert recorder.flush()
    assert report_words(now) == 1
    late = stripe_server.meter_events[f"words-{stripe_customer.stripe_id}-{hour:%Y%m%dT%H}-1"]
    assert int(late["value"]) == 7 and late["timestamp"] == int(period_start.timestamp())


def test_webhooks_are_refused_while_no_signing_secret_is_configured(client, db, stripe_server, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = client.post(
        WEBHOOK, **signed(event("evt_x", "customer.updated", {"object": "customer", "id": "c"}), secret="")
    )
    assert response.status_code == 503 and not WebhookEvent.objects.exists()


def test_words_from_before_the_switch_to_pay_as_you_go_are_not_billed(stripe_server, customer, tmp_path, usage_store):
    stripe_customer = ensure_stripe_customer(customer.default_organization())
    now = timezone.now()
    recorder = UsageRecorder(journal_dir=tmp_path)
    recorder.record(
        (
            (now - timedelta(hours=5)).timestamp(),
            customer.default_organization().pk,
            None,
            "/v1/en/generation",
            "POST",
            200,
            "before",
            False,
        )
    )
    Quantity.objects.create(request_id="before", words=500, characters=1)
    assert recorder.flush()
    subscribe(stripe_customer, "price_payg_words")  # the switch: metered from now on
    sync(stripe_customer)
    assert report_words(now + timedelta(hours=2)) == 0

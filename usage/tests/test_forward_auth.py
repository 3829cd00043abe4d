"""The forward-auth answers: identity, 401, 429 with the rate-limit fields, usage recorded."""

import json
from datetime import UTC

import pytest

from accounts.models import ApiToken, Membership, Role
from billing.models import Customer, Plan
from usage.forward_auth import HEADERS_READ, MAX_ENDPOINTS_KEPT
from usage.tests.helpers import T0, call


def body(answer) -> dict:
    return json.loads(answer.body)


def test_a_valid_token_passes_with_identity_headers_for_the_upstream(auth, secret, customer):
    auth.refresh()
    answer = call(auth, secret)
    headers = dict(answer.headers)
    assert answer.status == 200 and answer.body == b""
    assert headers["X-Organization-Id"] == str(customer.default_organization().pk)  # the account
    assert headers["X-User-Id"] == str(customer.pk)  # who created the token
    assert headers["X-Plan"] == "tiny"
    assert headers["X-Token-Id"] == str(customer.default_organization().tokens.get().pk)
    assert len(headers["X-Request-Id"]) == 32


def test_the_token_scheme_is_accepted_too(auth, secret):
    auth.refresh()
    assert auth.answer({"HTTP_AUTHORIZATION": f"Token {secret}"}).status == 200


def test_each_allowed_call_is_recorded_with_its_request_id(auth, secret, recorder, customer):
    auth.refresh()
    answers = [call(auth, secret, uri="/v1/en/entities?lang=en") for _ in range(2)]
    events = recorder.drain()
    token = customer.default_organization().tokens.get()
    assert events == [
        (
            T0,
            customer.default_organization().pk,
            token.pk,
            "/v1/en/entities",
            "POST",
            200,
            dict(a.headers)["X-Request-Id"],
            False,
        )
        for a in answers
    ]
    assert events[0][6] != events[1][6]  # request ids


@pytest.mark.parametrize(
    "authorization, detail",
    [
        (None, "Send your API token"),
        ("", "Send your API token"),
        ("Basic dXNlcjpwYXNz", "well-formed"),
        ("Bearer", "well-formed"),
        ("Bearer nlp_short", "well-formed"),
        ("Bearer " + "nlp_abcdefgh_" + "x" * 43, "unknown or has been revoked"),
    ],
)
def test_missing_malformed_and_unknown_tokens_get_401_with_a_problem_body(auth, secret, authorization, detail):
    auth.refresh()
    environ = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    answer = auth.answer(environ)
    headers = dict(answer.headers)
    assert answer.status == 401
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert body(answer)["status"] == 401 and detail in body(answer)["detail"]


@pytest.mark.parametrize("warm", [False, True])
def test_a_wrong_secret_behind_a_real_prefix_gets_401(auth, secret, warm):
    auth.refresh()
    if warm:  # the right secret first: a cached token is then checked against what it was verified as
        assert call(auth, secret).status == 200
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert "unknown or has been revoked" in body(call(auth, wrong))["detail"]
    assert "well-formed" in body(call(auth, secret + "x"))["detail"]
    assert "well-formed" in body(call(auth, secret[:13]))["detail"]
    assert call(auth, secret).status == 200


def test_a_revoked_token_gets_401_after_refresh(auth, secret, customer):
    auth.refresh()
    customer.default_organization().tokens.get().revoke()
    auth.refresh()
    assert call(auth, secret).status == 401


def test_a_deactivated_organization_is_refused(auth, secret, customer):
    organization = customer.default_organization()
    organization.is_active = False
    organization.save()
    auth.refresh()
    assert call(auth, secret).status == 401


def test_a_token_outlives_its_creator_while_its_organization_has_an_active_member(
    auth, secret, customer, other_customer
):
    organization = customer.default_organization()
    Membership.objects.create(organization=organization, user=other_customer, role=Role.OWNER)
    auth.refresh()
    assert call(auth, secret).status == 200
    customer.delete()  # the member who created it: the organization's token stays, naming no user
    auth.refresh()
    answer = call(auth, secret)
    headers = dict(answer.headers)
    assert answer.status == 200 and headers["X-Organization-Id"] == str(organization.pk)
    assert "X-User-Id" not in headers

    other_customer.is_active = False  # the last active member: nobody answers for the tokens
    other_customer.save()
    auth.refresh()
    assert call(auth, secret).status == 401
    other_customer.is_active = True
    other_customer.save()
    auth.refresh()
    assert call(auth, secret).status == 200
    other_customer.delete()
    auth.refresh()
    assert call(auth, secret).status == 401


def test_a_customer_moved_to_another_organization_leaves_no_stale_plan(auth, secret, customer, other_customer):
    auth.refresh()
    assert dict(call(auth, secret).headers)["X-Plan"] == "tiny"
    moved = Customer.objects.filter(organization=customer.default_organization())
    moved.update(organization=other_customer.default_organization())  # as staff may, in the admin
    auth.refresh()
    assert dict(call(auth, secret).headers)["X-Plan"] == Plan.objects.default().slug


def test_the_call_over_the_limit_gets_429_with_retry_after_and_the_rate_limit_fields(auth, secret, clock):
    auth.refresh()
    assert [call(auth, secret).status for _ in range(3)] == [200, 200, 200]
    clock.advance(10)
    answer = call(auth, secret)
    headers = dict(answer.headers)
    assert answer.status == 429
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Retry-After"] == "51"  # the first calls' bucket leaves the window 61 s after them
    assert headers["RateLimit-Policy"] == '"minute";q=3;w=60, "hour";q=5;w=3600'
    assert headers["RateLimit"] == '"minute";r=0;t=51'
    problem = body(answer)
    assert problem["window"] == "minute" and problem["limit"] == 3 and problem["retry_after"] == 51
    assert "3 requests per minute" in problem["detail"]


def test_after_retry_after_the_call_passes(auth, secret, clock):
    auth.refresh()
    for _ in range(3):
        call(auth, secret)
    retry = int(dict(call(auth, secret).headers)["Retry-After"])
    clock.advance(retry - 1)
    assert call(auth, secret).status == 429
    clock.advance(1)
    assert call(auth, secret).status == 200


def test_the_hour_window_applies_once_minutes_pass(auth, secret, clock):
    auth.refresh()
    statuses = []
    for _ in range(3):
        statuses += [call(auth, secret).status for _ in range(2)]
        clock.advance(62)
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert body(call(auth, secret))["window"] == "hour"


def test_endpoint_limits_apply_only_to_matching_paths(auth, secret):
    auth.refresh()
    summaries = [call(auth, secret, uri="/v1/en/summarization").status for _ in range(3)]
    assert summaries == [200, 200, 429]
    answer = call(auth, secret, uri="/v1/de/summarization?x=1")
    assert body(answer)["window"] == "/v1/*/summarization per minute"
    assert '"/v1/*/summarization per minute";q=2;w=60' in dict(answer.headers)["RateLimit-Policy"]
    assert call(auth, secret, uri="/v1/en/entities").status == 200  # refused calls took no plan quota


def test_endpoint_limits_still_apply_after_a_flood_of_made_up_paths(auth, plan):
    auth.refresh()
    rules = auth.plans[plan.id]
    names = lambda limits: [limit.name for limit in limits]  # noqa: E731
    for n in range(MAX_ENDPOINTS_KEPT + 5):  # each path's limits are kept, up to a bound
        assert names(rules.limits_for(f"/v1/made-up-{n}")) == ["minute", "hour"]
        assert len(rules.by_endpoint) <= MAX_ENDPOINTS_KEPT
    assert names(rules.limits_for("/v1/en/summarization")) == ["minute", "hour", "/v1/*/summarization per minute"]


def test_the_month_window_is_the_calendar_month_without_a_subscription(auth, customer, clock):
    free = Plan.objects.default()
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    Plan.objects.filter(pk=free.pk).update(per_month=2, per_minute=None, per_hour=None, per_day=None)
    free.endpoint_limits.all().delete()
    auth.refresh()
    assert [call(auth, secret).status for _ in range(3)] == [200, 200, 429]
    answer = call(auth, secret)
    # T0 is 2027-01-15 08:00 UTC: the month resets on 1 February, 16 days and 16 hours later.
    assert dict(answer.headers)["Retry-After"] == str(16 * 86400 + 16 * 3600)
    assert '"month";q=2;w=2678400' in dict(answer.headers)["RateLimit-Policy"]  # 31 days
    clock.advance(16 * 86400 + 16 * 3600)
    assert call(auth, secret).status == 200


def test_the_month_window_follows_the_billing_period_of_a_subscription(auth, customer, clock, plan):
    from datetime import datetime

    Plan.objects.filter(pk=plan.pk).update(per_month=1, per_minute=None, per_hour=None)
    start, end = datetime(2027, 1, 10, tzinfo=UTC), datetime(2027, 2, 10, tzinfo=UTC)
    Customer.objects.create(
        organization=customer.default_organization(), plan=plan, current_period_start=start, current_period_end=end
    )
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    auth.refresh()
    assert [call(auth, secret).status for _ in range(2)] == [200, 429]
    clock.now = end.timestamp() - 1
    assert call(auth, secret).status == 429
    clock.now = end.timestamp()  # the period ended and was not renewed in the cache: the calendar month applies
    assert call(auth, secret).status == 200


def test_concurrency_is_limited_by_leases_the_upstream_releases(auth, secret, plan):
    Plan.objects.filter(pk=plan.pk).update(concurrency=1, per_minute=None, per_hour=None)
    auth.refresh()
    first = call(auth, secret)
    lease = dict(first.headers)["X-Lease-Id"]
    refused = call(auth, secret)
    assert refused.status == 429 and body(refused)["window"] == "concurrency"
    assert dict(refused.headers)["Retry-After"] == "1"
    release = {"REQUEST_METHOD": "POST", "HTTP_X_LEASE_ID": lease}
    assert auth.release(release).status == 204
    assert auth.release(release).status == 404
    assert auth.release({"REQUEST_METHOD": "GET"}).status == 405
    assert call(auth, secret).status == 200


class NotedReads(dict):
    """An environ that notes the keys read from it."""

    def __init__(self, **items):
        super().__init__(**items)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def test_a_decision_reads_exactly_the_headers_the_forward_auth_server_passes(auth, secret, customer, plan):
    Plan.objects.filter(pk=plan.pk).update(concurrency=1)
    customer.default_organization().tokens.update(allowed_networks=["10.0.0.0/8"], per_minute=100)
    auth.refresh()
    environ = NotedReads(
        REQUEST_METHOD="GET",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_X_FORWARDED_FOR="10.1.2.3",
        HTTP_X_FORWARDED_URI="/v1/en/entities",
        HTTP_X_FORWARDED_METHOD="POST",
        HTTP_USER_AGENT="curl/8.5.0",
    )
    answer = auth.answer(environ)
    assert answer.status == 200
    release = NotedReads(REQUEST_METHOD="POST", HTTP_X_LEASE_ID=dict(answer.headers)["X-Lease-Id"])
    assert auth.release(release).status == 204
    assert {key for key in environ.read | release.read if key.startswith("HTTP_")} == HEADERS_READ


def test_rejected_calls_are_recorded_as_429(auth, secret, recorder):
    auth.refresh()
    for _ in range(4):
        call(auth, secret)
    assert [event[5] for event in recorder.drain()] == [200, 200, 200, 429]


def test_a_warm_decision_makes_no_database_query(auth, secret, django_assert_num_queries):
    auth.refresh()
    made_up = "nlp_abcdefgh_" + "x" * 43
    with django_assert_num_queries(2):  # the first call of each prefix looks it up
        call(auth, secret)
        call(auth, made_up)
    with django_assert_num_queries(0):
        for uri in ["/v1/en/entities", "/v1/en/summarization"] * 3:
            call(auth, secret, uri=uri)
        call(auth, made_up)
        call(auth, "garbage")


def test_a_new_token_works_on_its_first_call(auth, secret, customer):
    auth.refresh()
    assert call(auth, secret).status == 200
    new_secret = ApiToken.issue(customer.default_organization(), "new")[1]  # no refresh in between
    assert call(auth, new_secret).status == 200


def test_a_flood_of_made_up_tokens_is_looked_up_a_bounded_number_of_times_and_keeps_tokens_in_use(
    auth, secret, django_assert_max_num_queries
):
    auth.lookups_per_second, auth.cache_size = 5, 3
    auth.refresh()
    assert call(auth, secret).status == 200
    with django_assert_max_num_queries(5):
        statuses = {call(auth, f"nlp_{i:08d}_" + "x" * 43).status for i in range(100)}
    assert statuses == {401, 503}  # past the look-ups of this second: "try again", never a query
    assert len(auth.unknown) <= 3 and list(auth.credentials) == [secret[:12]]
    with django_assert_max_num_queries(0):
        assert call(auth, secret).status == 200


def test_the_tokens_kept_in_memory_are_bounded(auth, customer):
    Customer.objects.create(
        organization=customer.default_organization(), plan=Plan.objects.create(name="Open", slug="open")
    )
    auth.cache_size = 3
    auth.refresh()
    secrets = [ApiToken.issue(customer.default_organization(), f"t{i}")[1] for i in range(5)]
    assert [call(auth, secret).status for secret in secrets * 2] == [200] * 10
    assert len(auth.credentials) == 3


def test_a_plan_change_applies_after_refresh(auth, secret, plan):
    auth.refresh()
    for _ in range(3):
        call(auth, secret)
    assert call(auth, secret).status == 429
    Plan.objects.filter(pk=plan.pk).update(per_minute=10, per_hour=100)
    auth.refresh()
    assert call(auth, secret).status == 200  # earlier counts are kept: 4th of 10


def test_a_user_without_a_customer_record_gets_the_default_plan(auth, customer):
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    auth.refresh()
    assert dict(call(auth, secret).headers)["X-Plan"] == "free"


@pytest.mark.parametrize("uri", ["/v1/en/summariz%61tion", "/v1//en/summarization", "/v1/x/../en/./summarization?a=1"])
def test_endpoint_limits_see_the_path_the_upstream_will_route(auth, secret, recorder, uri):
    auth.refresh()
    assert [call(auth, secret, uri=uri).status for _ in range(3)] == [200, 200, 429]
    assert {event[3] for event in recorder.drain()} == {"/v1/en/summarization"}


@pytest.mark.parametrize(
    "reason, title, fix",
    [("spend_cap", "Spend cap reached", "Billing page"), ("payment_failed", "Payment failed", "Customer Portal")],
)
def test_a_blocked_customer_is_refused_with_402_naming_the_reason_until_unblocked(
    auth, secret, customer, reason, title, fix
):
    auth.refresh()
    assert call(auth, secret).status == 200
    assert auth.credentials[secret[:12]].blocked == ""
    Customer.objects.filter(organization=customer.default_organization()).update(
        calls_blocked=reason
    )  # only the change feed tells forward-auth
    auth.refresh()
    answer = call(auth, secret)
    assert answer.status == 402 and dict(answer.headers)["Content-Type"] == "application/problem+json"
    problem = json.loads(answer.body)
    assert problem["title"] == title and problem["blocked"] == reason and problem["status"] == 402
    assert problem["type"].endswith(title.lower().replace(" ", "-")) and fix in problem["detail"]
    Customer.objects.filter(organization=customer.default_organization()).update(calls_blocked="")
    auth.refresh()
    assert call(auth, secret).status == 200

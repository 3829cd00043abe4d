"""The customer's Usage page, its CSV export, and the staff's usage pages."""

import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import Plan
from tests.helpers import HTMX
from usage.models import ApiCall, Quantity
from usage.recorder import UsageRecorder


@pytest.fixture
def calls(customer, other_customer, tmp_path):
    """Calls of the customer over the last days (one refused), and one of another customer."""
    now = timezone.now().timestamp()
    recorder = UsageRecorder(journal_dir=tmp_path)
    for i, age_hours in enumerate([0, 0, 1, 30, 100]):
        status = 429 if i == 1 else 200
        recorder.record(
            (
                now - age_hours * 3600,
                customer.default_organization().pk,
                None,
                "/v1/en/entities",
                "POST",
                status,
                f"c{i}",
                False,
            )
        )
    recorder.record((now, customer.default_organization().pk, None, "/v1/en/summarization", "POST", 200, "c9", False))
    recorder.record(
        (now, other_customer.default_organization().pk, None, "/v1/secret/endpoint", "POST", 200, "o1", False)
    )
    Quantity.objects.create(request_id="c0", words=120, characters=800)
    assert recorder.flush()


def test_the_usage_page_shows_charts_table_and_quotas(customer_client, calls):
    html = customer_client.get(reverse("usage"), {"range": "7d"}).content.decode()
    assert html.count('role="img"') == 3 and "Requests" in html and "Words generated" in html
    assert "/v1/en/entities" in html and "/v1/en/summarization" in html
    assert "/v1/secret/endpoint" not in html  # another customer's calls
    assert "6 calls in all" in html and "120 words in all" in html and "800 characters in all" in html
    assert "/v1/en/summarization: 1 calls</title></rect>" in html  # values on hover
    assert (
        "Last 24 hours" in html and "3 of 1,000 calls" in html
    )  # Free plan; allowed: 2 now (1 refused), 1 an hour ago


def test_each_range_has_its_granularity(customer_client, calls):
    for key, buckets in [("24h", 24), ("7d", 28), ("30d", 30), ("12m", 12)]:
        report = customer_client.get(reverse("usage"), {"range": key}).context_data["report"]
        assert len(report.table()) == buckets
        assert sum(row["requests"] for row in report.table()) == {"24h": 4, "7d": 6, "30d": 6, "12m": 6}[key]


def test_switching_range_over_htmx_returns_only_the_report(customer_client, calls):
    response = customer_client.get(reverse("usage"), {"range": "30d"}, HTTP_HX_TARGET="usage-report", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="usage-report">')
    assert "Quotas" not in html and "<h1>" not in html
    assert 'aria-current="true">30 days' in html
    assert "HX-Request" in response["Vary"]


def test_the_last_24_hours_refresh_their_figures_alone(customer_client, calls):
    page = customer_client.get(reverse("usage"), {"range": "24h"}).content.decode()
    assert '<div id="usage-figures" hx-get="?range=24h" hx-trigger="every 15s" hx-swap="outerHTML"' in page
    response = customer_client.get(reverse("usage"), {"range": "24h"}, HTTP_HX_TARGET="usage-figures", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="usage-figures"') and "4 calls in all" in html
    assert "<h2>" not in html and 'aria-label="Time range"' not in html  # the range picker is left as it is


def test_other_ranges_do_not_refresh(customer_client, calls):
    for key in ["7d", "30d", "12m"]:
        assert "hx-trigger" not in customer_client.get(reverse("usage"), {"range": key}).content.decode()


def test_an_unknown_range_is_a_400_with_a_message(customer_client, calls):
    response = customer_client.get(reverse("usage"), {"range": "forever"})
    assert response.status_code == 400 and "Unknown range" in response.content.decode()
    assert customer_client.get(reverse("usage_csv"), {"range": "x"}).status_code == 400


def test_the_csv_export_has_the_numbers_of_the_table(customer_client, calls):
    response = customer_client.get(reverse("usage_csv"), {"range": "30d"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert response["Content-Type"] == "text/csv"
    assert sum(int(row["requests"]) for row in rows) == 6 and sum(int(row["refused"]) for row in rows) == 1
    assert sum(int(row["words"]) for row in rows) == 120
    assert {row["endpoint"] for row in rows} == {"/v1/en/entities", "/v1/en/summarization"}


FORMULAS = ['=HYPERLINK("evil.example","x")', "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("who", ["customer", "staff"])
def test_csv_cells_that_would_run_as_formulas_are_exported_as_text(request, customer, who):
    now = timezone.now()
    for i, endpoint in enumerate([*FORMULAS, "/v1/en/x-y"]):
        ApiCall.objects.create(
            time=now,
            account_id=customer.default_organization().pk,
            endpoint=endpoint,
            method="POST",
            status=200,
            request_id=f"f{i}",
        )
    client = request.getfixturevalue(f"{who}_client")
    url = (
        reverse("usage_csv")
        if who == "customer"
        else reverse("customer_usage_csv", args=[customer.default_organization().pk])
    )
    rows = list(csv.DictReader(io.StringIO(client.get(url, {"range": "24h"}).content.decode())))
    assert sorted(row["endpoint"] for row in rows) == sorted([*(f"'{formula}" for formula in FORMULAS), "/v1/en/x-y"])


def test_an_empty_account_says_so(customer_client):
    html = customer_client.get(reverse("usage")).content.decode()
    assert "No calls in this range." in html and "<svg" not in html


def test_quotas_follow_the_plan(customer_client, customer, calls):
    Plan.objects.filter(is_default=True).update(per_day=None, per_hour=3)
    html = customer_client.get(reverse("usage")).content.decode()
    assert "Last 24 hours" not in html and "This hour" in html


def test_staff_see_the_overview_and_any_customers_usage(staff_client, customer, calls):
    html = staff_client.get(reverse("usage_overview"), {"range": "30d"}).content.decode()
    assert customer.email in html and "/v1/secret/endpoint" in html
    assert '<td class="num">20%</td>' in html  # /v1/en/entities: 1 of its 5 calls refused
    page = staff_client.get(reverse("customer_usage", args=[customer.default_organization().pk]))
    assert page.status_code == 200 and f"Usage of {customer.email}" in page.content.decode()
    assert staff_client.get(reverse("customer_usage_csv", args=[customer.default_organization().pk])).status_code == 200


@pytest.mark.parametrize("name, args", [("usage_overview", []), ("customer_usage", [1]), ("customer_usage_csv", [1])])
def test_customers_cannot_see_staff_usage_pages(customer_client, name, args):
    response = customer_client.get(reverse(name, args=args))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

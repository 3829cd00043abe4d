from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken
from usage.recorder import UsageRecorder


def test_a_new_customer_is_told_what_to_do_first(customer_client):
    html = customer_client.get(reverse("dashboard")).content.decode()
    assert "Get started" in html and "Create an API token" in html and "curl -X POST" in html
    assert "No call was refused in the last 7 days." in html


def test_the_dashboard_shows_plan_calls_today_quotas_and_refusals(customer_client, customer, tmp_path, usage_store):
    ApiToken.issue(customer.default_organization(), "t")
    now = timezone.now().timestamp()
    recorder = UsageRecorder(journal_dir=tmp_path)
    for i, status in enumerate([200, 200, 200, 429]):
        recorder.record(
            (now, customer.default_organization().pk, None, "/v1/en/entities", "POST", status, f"d{i}", False)
        )
    assert recorder.flush()
    html = customer_client.get(reverse("dashboard")).content.decode()
    assert "Get started" not in html and "Free" in html
    assert '<p class="big">3</p>' in html and "1 refused" in html
    assert "1 call to <code>/v1/en/entities</code> refused" in html
    assert "3 of 1,000 calls" in html

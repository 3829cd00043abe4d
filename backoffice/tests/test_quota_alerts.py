"""Quota alerts: the scheduled job e-mails at the customer's thresholds of the period's quotas, once each."""

import io

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role
from billing.customers import customer_of
from billing.models import Customer, Plan, QuotaAlert
from usage.models import Quantity
from usage.recorder import UsageRecorder


@pytest.fixture
def calls(customer, tmp_path, usage_store):
    """Record n allowed calls of the customer now (and one refused, which does not count)."""
    recorder = UsageRecorder(journal_dir=tmp_path)
    made = iter(range(10_000))

    def make(n: int, words: int = 0) -> None:
        now = timezone.now().timestamp()
        for _ in range(n):
            request_id = f"q{next(made)}"
            recorder.record(
                (now, customer.default_organization().pk, None, "/v1/en/entities", "POST", 200, request_id, False)
            )
            if words:
                Quantity.objects.create(request_id=request_id, words=words, characters=1)
        recorder.record(
            (now, customer.default_organization().pk, None, "/v1/en/entities", "POST", 429, f"q{next(made)}", False)
        )
        assert recorder.flush()

    return make


@pytest.fixture
def small_quota(customer) -> Customer:
    """The customer on Free, whose quota is 10 calls per period."""
    Plan.objects.filter(is_default=True).update(per_month=10)
    return customer_of(customer.default_organization())


def send_alerts() -> None:
    call_command("send_quota_alerts", stdout=io.StringIO())


def test_alerts_go_to_the_organizations_owners_and_billing_members(small_quota, calls, customer, django_user_model):
    organization = customer.default_organization()
    for email, role in [("pay@example.com", Role.BILLING), ("dev@example.com", Role.DEVELOPER)]:
        user = django_user_model.objects.create_user(email, "x")
        Membership.objects.create(organization=organization, user=user, role=role)
    calls(8)
    send_alerts()
    assert sorted(mail.outbox[0].to) == ["ada@example.com", "pay@example.com"]


def test_an_alert_with_no_one_to_tell_waits_for_someone(small_quota, calls, customer):
    customer.is_active = False  # the only owner
    customer.save()
    calls(8)
    send_alerts()
    assert mail.outbox == [] and QuotaAlert.objects.get().sent_at is None
    customer.is_active = True
    customer.save()
    send_alerts()
    assert mail.outbox[0].to == [customer.email] and QuotaAlert.objects.get().sent_at is not None


def test_calls_reaching_80_then_100_percent_send_one_e_mail_each_once(small_quota, calls, customer):
    calls(7)
    send_alerts()
    assert mail.outbox == [] and not QuotaAlert.objects.exists()

    calls(1)  # 8 of 10
    send_alerts()
    send_alerts()
    assert [m.subject for m in mail.outbox] == ["You have used 80% of your quota of calls"]
    assert mail.outbox[0].to == [customer.email] and "8 calls of your quota of 10 calls" in mail.outbox[0].body

    calls(2)  # 10 of 10
    send_alerts()
    send_alerts()
    assert [m.subject for m in mail.outbox][1:] == ["You have reached your quota of calls"]
    assert list(QuotaAlert.objects.values_list("threshold", "used", "quota")) == [(100, 10, 10), (80, 8, 10)]
    assert not QuotaAlert.objects.filter(sent_at__isnull=True).exists()


def test_thresholds_reached_together_get_one_e_mail_for_the_highest(small_quota, calls):
    calls(12)
    send_alerts()
    assert [m.subject for m in mail.outbox] == ["You have reached your quota of calls"]
    assert QuotaAlert.objects.count() == 2


def test_the_dashboard_shows_the_alerts_of_the_period(small_quota, calls, customer_client):
    calls(9)
    send_alerts()
    html = customer_client.get(reverse("dashboard")).content.decode()
    assert "Quota alerts this period" in html and "80% of your calls quota reached: 9 of 10" in html
    assert "(e-mailed)" in html


def test_an_alert_the_mail_server_refused_is_sent_by_the_next_run(small_quota, calls, settings):
    calls(8)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", 9, False  # nothing listens
    send_alerts()
    assert QuotaAlert.objects.get().sent_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    send_alerts()
    assert len(mail.outbox) == 1 and QuotaAlert.objects.get().sent_at is not None


def test_a_customer_without_thresholds_gets_no_alert(small_quota, calls):
    Customer.objects.filter(pk=small_quota.pk).update(alert_thresholds=[])
    calls(10)
    send_alerts()
    assert mail.outbox == [] and not QuotaAlert.objects.exists()


def test_pay_as_you_go_words_are_alerted_against_the_customers_budget(customer, calls):
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg"), words_alert_quota=1000, alert_thresholds=[50]
    )
    calls(2, words=300)  # 600 words of 1,000; Pay-as-you-go sets no calls per period
    send_alerts()
    assert [m.subject for m in mail.outbox] == ["You have used 50% of your quota of words"]
    assert QuotaAlert.objects.get().measure == "words"


def test_the_customer_sets_thresholds_on_the_billing_page(customer_client, customer):
    html = customer_client.get(reverse("billing")).content.decode()
    assert 'value="80, 100"' in html and "Words per billing period" not in html  # words: pay-as-you-go only
    response = customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "90, 50%, 90"})
    assert response.status_code == 302
    assert Customer.objects.get(organization=customer.default_organization()).alert_thresholds == [50, 90]
    customer_client.post(reverse("quota_alerts"), {"alert_thresholds": ""})
    assert Customer.objects.get(organization=customer.default_organization()).alert_thresholds == []


@pytest.mark.parametrize("value", ["0", "101", "80, abc", "-5", "1,2,3,4,5,6"])
def test_thresholds_outside_1_to_100_get_a_field_error(customer_client, customer, value):
    response = customer_client.post(reverse("quota_alerts"), {"alert_thresholds": value})
    html = response.content.decode()
    assert response.status_code == 200 and 'class="errorlist' in html
    assert "from 1 to 100" in html or "At most 5" in html
    assert Customer.objects.get(organization=customer.default_organization()).alert_thresholds == [80, 100]


def test_a_pay_as_you_go_customer_sets_a_positive_words_budget(customer_client, customer):
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg")
    )
    response = customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "80", "words_alert_quota": "-1"})
    assert 'class="errorlist' in response.content.decode()
    customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "80", "words_alert_quota": "50000"})
    assert Customer.objects.get(organization=customer.default_organization()).words_alert_quota == 50_000


def test_the_job_blocks_pay_as_you_go_calls_at_the_spend_cap_and_unblocks_under_it(customer, calls):
    payg = Plan.objects.get(slug="payg")
    assert payg.cents_per_1000_words == 50  # $0.50 per 1,000 words
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=payg, spend_cap_cents=100, alert_thresholds=[]
    )
    calls(2, words=600)  # 1,200 words: $0.60 of $1.00
    send_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == ""
    calls(2, words=500)  # 2,200 words: $1.10
    send_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == "spend_cap"
    Customer.objects.filter(organization=customer.default_organization()).update(spend_cap_cents=200)  # a raised cap
    send_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == ""
    Customer.objects.filter(organization=customer.default_organization()).update(spend_cap_cents=110)  # reached exactly
    send_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == "spend_cap"
    Customer.objects.filter(organization=customer.default_organization()).update(spend_cap_cents=None)  # no cap
    send_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == ""


def test_the_spend_cap_job_leaves_a_payment_failed_block_alone(customer, calls):
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg"), spend_cap_cents=1000, calls_blocked="payment_failed"
    )
    calls(1, words=10)
    send_alerts()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == "payment_failed"


def test_a_pay_as_you_go_customer_sets_a_positive_spend_cap(customer_client, customer):
    assert "Spend cap" not in customer_client.get(reverse("billing")).content.decode()  # pay-as-you-go only
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg")
    )
    for value in ("-5", "0", "abc"):
        response = customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "80", "spend_cap": value})
        html = response.content.decode()
        assert response.status_code == 200 and 'class="errorlist' in html
        assert Customer.objects.get(organization=customer.default_organization()).spend_cap_cents is None
    assert (
        "A spend cap is a positive amount"
        in customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "80", "spend_cap": "0"}).content.decode()
    )
    customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "80", "spend_cap": "12.50"})
    assert Customer.objects.get(organization=customer.default_organization()).spend_cap_cents == 1250
    assert 'value="12.50"' in customer_client.get(reverse("billing")).content.decode()
    customer_client.post(reverse("quota_alerts"), {"alert_thresholds": "80", "spend_cap": ""})
    assert Customer.objects.get(organization=customer.default_organization()).spend_cap_cents is None


def test_the_billing_page_says_calls_are_blocked_at_the_spend_cap(customer_client, customer):
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg"), spend_cap_cents=100, calls_blocked="spend_cap"
    )
    html = customer_client.get(reverse("billing")).content.decode()
    assert "Your spend cap is reached" in html and "Your API calls are blocked" in html


def test_the_spend_cap_is_alerted_before_it_blocks(customer, calls, customer_client):
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg"), spend_cap_cents=100, alert_thresholds=[80, 100]
    )
    calls(2, words=800)  # 1,600 words: $0.80 of $1.00
    send_alerts()
    assert [m.subject for m in mail.outbox] == ["You have used 80% of your spend cap"]
    assert "$0.80 of your spend cap of $1.00" in mail.outbox[0].body
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == ""
    assert "80% of your spend cap reached: $0.80 of $1.00" in customer_client.get(reverse("dashboard")).content.decode()
    calls(1, words=400)  # $1.00
    send_alerts()
    assert mail.outbox[-1].subject == "You have reached your spend cap: API calls are blocked"
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == "spend_cap"


def test_words_used_before_the_move_to_pay_as_you_go_count_for_neither_alerts_nor_the_cap(customer, calls):
    """Words are billed from metered_since: the alerts count the words the spend cap's job counts."""
    calls(2, words=800)  # 1,600 words on the earlier plan: $0.80 at Pay-as-you-go's price, never billed
    Customer.objects.filter(pk=customer_of(customer.default_organization()).pk).update(
        plan=Plan.objects.get(slug="payg"),
        metered_since=timezone.now(),
        spend_cap_cents=100,
        words_alert_quota=1000,
        alert_thresholds=[50, 80],
    )
    send_alerts()
    assert mail.outbox == [] and not QuotaAlert.objects.exists()
    assert Customer.objects.get(organization=customer.default_organization()).calls_blocked == ""

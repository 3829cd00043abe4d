from django.urls import reverse

from accounts.models import ApiToken


def test_the_token_admin_lists_prefixes_and_never_secrets_or_hashes(staff_client, customer):
    token, secret = ApiToken.issue(customer, "production")
    for url in [
        reverse("admin:accounts_apitoken_changelist"),
        reverse("admin:accounts_apitoken_change", args=[token.pk]),
        reverse("admin:accounts_user_change", args=[customer.pk]),
    ]:
        html = staff_client.get(url).content.decode()
        assert token.prefix in html
        assert secret not in html and token.digest not in html


def test_staff_revoke_tokens_with_an_admin_action(staff_client, customer):
    active, _ = ApiToken.issue(customer, "one")
    ApiToken.issue(customer, "two")
    response = staff_client.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [active.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    assert list(ApiToken.objects.active().values_list("name", flat=True)) == ["two"]


def test_staff_search_tokens_by_customer_email_and_filter_by_state(staff_client, customer, other_customer):
    ApiToken.issue(customer, "ada-token")
    ApiToken.issue(other_customer, "grace-token")[0].revoke()
    url = reverse("admin:accounts_apitoken_changelist")
    html = staff_client.get(url, {"q": "ada@"}).content.decode()
    assert "ada-token" in html and "grace-token" not in html
    html = staff_client.get(url, {"state": "revoked"}).content.decode()
    assert "grace-token" in html and "ada-token" not in html


def test_staff_search_customers_by_email(staff_client, customer, other_customer):
    html = staff_client.get(reverse("admin:accounts_user_changelist"), {"q": "grace"}).content.decode()
    assert other_customer.email in html and customer.email not in html


def test_customers_cannot_reach_the_admin(customer_client):
    response = customer_client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_customers_admin_page_links_to_their_usage(staff_client, customer):
    html = staff_client.get(reverse("admin:accounts_user_change", args=[customer.pk])).content.decode()
    assert reverse("customer_usage", args=[customer.pk]) in html


def test_a_customers_admin_page_gathers_tokens_plan_usage_and_support(staff_client, customer):
    from accounts.models import SupportMessage
    from billing.models import Customer, Plan

    ApiToken.issue(customer, "laptop")
    Customer.objects.create(user=customer, plan=Plan.objects.get(slug="pro"))
    SupportMessage.objects.create(user=customer, subject="About limits", message="?")
    html = staff_client.get(reverse("admin:accounts_user_change", args=[customer.pk])).content.decode()
    assert "laptop" in html and "About limits" in html and "Usage (30 days)" in html
    assert "selected>Pro</option>" in html  # the plan, editable here

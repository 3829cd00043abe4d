import pytest
from django.db import ProgrammingError, transaction
from django.urls import reverse

from accounts.models import ApiToken, AuditEvent, Membership, Role, SupportMessage, User
from billing.models import Customer, Plan


def test_the_token_admin_lists_prefixes_and_never_secrets_or_hashes(staff_client, customer):
    token, secret = ApiToken.issue(customer.default_organization(), "production")
    for url in [
        reverse("admin:accounts_apitoken_changelist"),
        reverse("admin:accounts_apitoken_change", args=[token.pk]),
        reverse("admin:accounts_organization_change", args=[customer.default_organization().pk]),
    ]:
        html = staff_client.get(url).content.decode()
        assert token.prefix in html
        assert secret not in html and token.digest not in html


def test_staff_revoke_tokens_with_an_admin_action(staff_client, customer):
    active, _ = ApiToken.issue(customer.default_organization(), "one")
    ApiToken.issue(customer.default_organization(), "two")
    response = staff_client.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [active.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    assert list(ApiToken.objects.active().values_list("name", flat=True)) == ["two"]


def test_staff_search_tokens_by_customer_email_and_filter_by_state(staff_client, customer, other_customer):
    ApiToken.issue(customer.default_organization(), "ada-token")
    ApiToken.issue(other_customer.default_organization(), "grace-token")[0].revoke()
    url = reverse("admin:accounts_apitoken_changelist")
    html = staff_client.get(url, {"q": "ada@"}).content.decode()
    assert "ada-token" in html and "grace-token" not in html
    html = staff_client.get(url, {"state": "revoked"}).content.decode()
    assert "grace-token" in html and "ada-token" not in html


def test_staff_search_customers_by_email(staff_client, customer, other_customer):
    html = staff_client.get(reverse("admin:accounts_user_changelist"), {"q": "grace"}).content.decode()
    assert other_customer.email in html and customer.email not in html


def test_a_user_added_by_staff_is_made_as_sign_up_makes_one(staff_client):
    form = {"email": "New@Example.com", "password1": "correct horse battery", "password2": "correct horse battery"}
    form["usable_password"] = "true"
    assert staff_client.post(reverse("admin:accounts_user_add"), form).status_code == 302
    user = User.objects.get(email="new@example.com")
    assert user.default_organization().memberships.get().role == Role.OWNER


def test_customers_cannot_reach_the_admin(customer_client):
    response = customer_client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_organizations_admin_page_links_to_its_usage(staff_client, customer):
    organization = customer.default_organization()
    html = staff_client.get(reverse("admin:accounts_organization_change", args=[organization.pk])).content.decode()
    assert reverse("customer_usage", args=[organization.pk]) in html


def test_an_organizations_admin_page_gathers_members_tokens_plan_usage_and_audit_log(
    staff_client, customer, other_customer
):
    organization = customer.default_organization()
    Membership.objects.create(organization=organization, user=other_customer, role=Role.VIEWER)
    ApiToken.issue(organization, "laptop", created_by=customer)
    Customer.objects.create(organization=organization, plan=Plan.objects.get(slug="pro"))
    AuditEvent.objects.create(organization=organization, action="token_created", subject="laptop (nlp_x…)")
    html = staff_client.get(reverse("admin:accounts_organization_change", args=[organization.pk])).content.decode()
    assert "laptop" in html and "Usage (30 days)" in html and "laptop (nlp_x…)" in html
    assert "selected>Pro</option>" in html  # the plan, editable here
    assert other_customer.email in html and 'value="viewer" selected' in html  # its members and their roles


def test_a_users_admin_page_lists_their_organizations_and_support_messages(staff_client, customer):
    SupportMessage.objects.create(user=customer, subject="About limits", message="?")
    html = staff_client.get(reverse("admin:accounts_user_change", args=[customer.pk])).content.decode()
    assert "About limits" in html and str(customer.default_organization()) in html


def test_staff_find_organizations_by_a_members_email(staff_client, customer, other_customer):
    organization = customer.default_organization()
    Membership.objects.create(organization=organization, user=other_customer, role=Role.VIEWER)
    html = staff_client.get(reverse("admin:accounts_organization_changelist"), {"q": "grace"}).content.decode()
    assert html.count(f"/admin/accounts/organization/{organization.pk}/change/") == 1  # once, not per member
    assert f"/admin/accounts/organization/{other_customer.default_organization().pk}/change/" in html


def test_audit_events_are_never_changed_in_the_admin_or_the_database(staff_client, customer):
    event = AuditEvent.objects.create(
        organization=customer.default_organization(), action="token_created", subject="laptop"
    )
    assert staff_client.get(reverse("admin:accounts_auditevent_changelist")).status_code == 200
    change = staff_client.post(reverse("admin:accounts_auditevent_change", args=[event.pk]), {"subject": "other"})
    assert change.status_code == 403 or AuditEvent.objects.get().subject == "laptop"
    assert (
        staff_client.post(reverse("admin:accounts_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    with pytest.raises(ProgrammingError, match="audit events are never changed"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(subject="rewritten")
    assert AuditEvent.objects.get().subject == "laptop"

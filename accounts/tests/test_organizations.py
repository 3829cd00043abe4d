"""Organizations: roles enforced on every action (plain and htmx), scoping, switching, invitations,
the last owner, and the audit log."""

import threading
import time

import pytest
from django.core import mail, signing
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import PERMISSIONS, ApiToken, AuditEvent, Invitation, Membership, Organization, Role, User
from accounts.organizations import INVITATION_DAYS
from billing.customers import apply_subscription, customer_of
from billing.models import Plan
from tests.helpers import HTMX, PASSWORD

Action = AuditEvent.Action


@pytest.fixture
def organization(customer) -> Organization:
    """Ada's organization, with a token; Ada is its owner."""
    organization = customer.default_organization()
    ApiToken.issue(organization, "ada-laptop", created_by=customer)
    return organization


def member_client(user, organization: Organization, role: str | None = None) -> Client:
    """A client logged in as `user`, working in `organization` (joined with `role` if given)."""
    if role:
        Membership.objects.create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    assert client.post(reverse("switch_organization"), {"organization": organization.pk}).status_code == 302
    return client


def actions(organization: Organization, other: Membership) -> list[tuple[str, str, str, dict]]:
    """(permission, method, url, data) of every page and action of an organization."""
    token = organization.tokens.get()
    invitation = Invitation.objects.create(organization=organization, email="later@example.com", role=Role.VIEWER)
    return [
        ("usage", "get", reverse("dashboard"), {}),
        ("usage", "get", reverse("usage"), {}),
        ("usage", "get", reverse("usage_csv"), {}),
        ("usage", "get", reverse("organization"), {}),
        ("tokens", "get", reverse("tokens"), {}),
        ("tokens", "post", reverse("tokens"), {"name": "new"}),
        ("tokens", "get", reverse("token_restrictions", args=[token.pk]), {}),
        ("tokens", "post", reverse("token_restrictions", args=[token.pk]), {"name": "x", "per_minute": "5"}),
        ("tokens", "post", reverse("rotate_token", args=[token.pk]), {}),
        ("tokens", "post", reverse("revoke_token", args=[token.pk]), {}),
        ("billing", "get", reverse("billing"), {}),
        ("billing", "post", reverse("quota_alerts"), {"alert_thresholds": "50"}),
        ("billing", "post", reverse("choose_plan", args=["pro"]), {}),
        ("billing", "post", reverse("billing_portal"), {}),
        ("billing", "get", reverse("confirm_plan", args=["pro"]), {}),
        ("members", "post", reverse("invite"), {"email": "new@example.com", "role": "viewer"}),
        ("members", "post", reverse("cancel_invitation", args=[invitation.pk]), {}),
        ("members", "post", reverse("change_role", args=[other.pk]), {"role": "billing"}),
        ("audit", "get", reverse("audit_log"), {}),
        ("members", "post", reverse("remove_member", args=[other.pk]), {}),
    ]


def state(organization: Organization) -> tuple:
    """What an action could change: tokens, restrictions, members, invitations, alert thresholds."""
    tokens = list(organization.tokens.values_list("prefix", "revoked_at", "per_minute").order_by("pk"))
    members = list(organization.memberships.values_list("user_id", "role").order_by("pk"))
    return tokens, members, organization.invitations.count(), customer_of(organization).alert_thresholds


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
@pytest.mark.parametrize("role", [Role.OWNER, Role.DEVELOPER, Role.BILLING, Role.VIEWER])
def test_each_role_may_do_what_it_allows_and_is_refused_the_rest_saying_why(
    organization, customer, other_customer, role, headers
):
    client = member_client(other_customer, organization, role)
    ada = organization.memberships.get(user=customer)
    for permission, method, url, data in actions(organization, ada):
        before = state(organization)
        response = getattr(client, method)(url, data, **headers)
        if role in PERMISSIONS[permission]:
            assert response.status_code in (200, 302), (permission, url, response.status_code)
        else:
            assert response.status_code == 403, (role, url)
            text = response.content.decode()
            assert f"As {role.label.lower()} of {organization} you cannot" in text, url
            assert state(organization) == before, f"{role} changed something through {url}"


def test_another_organizations_token_is_a_404_and_stays_untouched(organization, other_customer):
    theirs = ApiToken.issue(other_customer.default_organization(), "theirs", created_by=other_customer)[0]
    client = member_client(organization.memberships.get().user, organization)
    for name in ["rotate_token", "revoke_token", "token_restrictions"]:
        assert client.post(reverse(name, args=[theirs.pk]), {"name": "x"}).status_code == 404
    assert ApiToken.objects.get(pk=theirs.pk).is_active
    assert "theirs" not in client.get(reverse("tokens")).content.decode()


def test_a_member_works_in_the_organization_they_switched_to_and_the_session_remembers_it(
    organization, customer, other_customer
):
    client = member_client(other_customer, organization, Role.DEVELOPER)
    page = client.get(reverse("tokens")).content.decode()
    assert "ada-laptop" in page and f"Tokens of {organization}" in page
    client.post(reverse("tokens"), {"name": "from grace"})
    assert organization.tokens.filter(name="from grace", created_by=other_customer).exists()
    assert not other_customer.default_organization().tokens.exists()

    client.post(reverse("switch_organization"), {"organization": other_customer.default_organization().pk})
    assert "ada-laptop" not in client.get(reverse("tokens")).content.decode()
    for forged in ["", "abc", "1\x00", "٣", str(10**30), str(customer.default_organization().pk + 999)]:
        assert client.post(reverse("switch_organization"), {"organization": forged}).status_code == 404


def test_someone_elses_organization_cannot_be_switched_to(organization, other_customer):
    client = Client()
    client.force_login(other_customer)
    assert client.post(reverse("switch_organization"), {"organization": organization.pk}).status_code == 404


def test_a_user_in_no_organization_is_sent_to_create_one(client, customer):
    Membership.objects.filter(user=customer).delete()
    client.force_login(customer)
    response = client.get(reverse("tokens"))
    assert response.status_code == 302 and response["Location"] == reverse("organizations")
    assert client.post(reverse("organizations"), {"name": " "}).status_code == 200  # a field error
    response = client.post(reverse("organizations"), {"name": "Analytical Engines Ltd"})
    assert response.status_code == 302
    created = Organization.objects.get(name="Analytical Engines Ltd")
    assert created.memberships.get().user == customer and created.memberships.get().role == Role.OWNER
    assert client.get(reverse("tokens")).status_code == 200


def invite(client: Client, email: str, role: str = Role.DEVELOPER) -> str:
    """The invitation link e-mailed to `email`."""
    mail.outbox.clear()
    assert client.post(reverse("invite"), {"email": email, "role": role}).status_code == 302
    (message,) = mail.outbox
    assert message.to == [email]
    return next(line for line in message.body.splitlines() if "/invitations/" in line).split("testserver")[1]


def test_an_invitation_is_accepted_once_by_its_invitee_who_then_works_in_the_organization(
    organization, customer, other_customer
):
    owner = member_client(customer, organization)
    link = invite(owner, other_customer.email)
    stranger = Client()
    assert "Sign up to accept" in stranger.get(link).content.decode()  # not logged in: sign up or log in
    wrong = Client()
    wrong.force_login(customer)
    assert wrong.post(link).status_code == 403  # logged in as someone else: not theirs to accept

    invitee = Client()
    User.objects.filter(pk=other_customer.pk).update(email=other_customer.email.upper())  # as staff may save it
    invitee.force_login(User.objects.get(pk=other_customer.pk))
    assert invitee.get(link).status_code == 200
    assert invitee.post(link).status_code == 302
    assert organization.memberships.get(user=other_customer).role == Role.DEVELOPER
    assert f"Tokens of {organization}" in invitee.get(reverse("tokens")).content.decode()  # switched to it
    assert invitee.post(link).status_code == 404  # once
    assert "not valid" in invitee.get(link).content.decode()


def test_an_invitation_link_that_is_forged_or_older_than_a_week_is_refused(
    organization, customer, other_customer, monkeypatch
):
    link = invite(member_client(customer, organization), other_customer.email)
    invitee = Client()
    invitee.force_login(other_customer)
    assert invitee.post(link.replace("/invitations/", "/invitations/x")).status_code == 404
    assert invitee.post("/invitations/%00%ff/").status_code == 404
    later = time.time() + INVITATION_DAYS * 24 * 3600 + 60
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert invitee.post(link).status_code == 404
    assert not organization.memberships.filter(user=other_customer).exists()


def test_a_new_user_signs_up_from_the_link_with_its_address_and_lands_on_the_invitation(organization, customer):
    link = invite(member_client(customer, organization), "new@example.com", Role.VIEWER)
    client = Client()
    page = client.get(f"{reverse('signup')}?next={link}").content.decode()
    assert 'value="new@example.com"' in page
    assert f'name="next" value="{link}"' in page  # the form sends it on
    form = {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD, "next": link}
    response = client.post(reverse("signup"), form)
    assert response.status_code == 302 and response["Location"] == link
    client.post(link)
    assert organization.memberships.get(user__email="new@example.com").role == Role.VIEWER
    assert client.get(reverse("tokens")).status_code == 403  # a viewer's working organization is Ada's now


def test_sign_up_goes_back_only_to_a_genuine_invitation(organization, customer):
    link = invite(member_client(customer, organization), "new@example.com")
    token = link.removeprefix("/invitations/").removesuffix("/")
    for i, forged in enumerate([token, "https://evil.example/", "/invitations/forged/", f"//evil.example{link}"]):
        form = {"email": f"n{i}@example.com", "password1": PASSWORD, "password2": PASSWORD, "next": forged}
        response = Client().post(reverse("signup"), form)
        assert response.status_code == 302 and response["Location"] == reverse("tokens"), forged


def test_an_organization_name_on_several_lines_is_e_mailed_on_one(customer):
    client = Client()
    client.force_login(customer)
    client.post(reverse("organizations"), {"name": "Acme\r\nBcc: someone@example.com"})
    link = invite(client, "new@example.com")
    assert mail.outbox[0].subject == f"{customer.email} invites you to Acme Bcc: someone@example.com on NLP API"
    assert link.startswith("/invitations/")


def test_inviting_a_member_again_is_a_field_error(organization, customer):
    owner = member_client(customer, organization)
    response = owner.post(reverse("invite"), {"email": customer.email, "role": Role.VIEWER})
    assert response.status_code == 200 and "is already a member" in response.content.decode()
    assert not Invitation.objects.exists()


def test_the_last_owner_can_neither_be_demoted_nor_removed_nor_leave(organization, customer, other_customer):
    owner = member_client(customer, organization)
    ada = organization.memberships.get(user=customer)
    owner.post(reverse("change_role", args=[ada.pk]), {"role": Role.VIEWER})
    owner.post(reverse("remove_member", args=[ada.pk]))
    for headers in [{}, HTMX]:
        response = owner.post(reverse("leave_organization"), **headers)
        assert response.status_code == 403 and "You are the last owner" in response.content.decode()
    assert organization.memberships.get(user=customer).role == Role.OWNER

    Membership.objects.create(organization=organization, user=other_customer, role=Role.OWNER)
    owner.post(reverse("leave_organization"))  # another owner remains
    assert not organization.memberships.filter(user=customer).exists()


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(customer, other_customer):
    organization = customer.default_organization()
    grace = Membership.objects.create(organization=organization, user=other_customer, role=Role.OWNER)
    ada = organization.memberships.get(user=customer)
    clients = [member_client(customer, organization), member_client(other_customer, organization)]
    start, statuses = threading.Barrier(2), []

    def demote(client: Client, membership: Membership) -> None:
        start.wait()
        try:
            statuses.append(
                client.post(reverse("change_role", args=[membership.pk]), {"role": Role.VIEWER}).status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=pair) for pair in zip(clients, [grace, ada])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302, 403]  # one demotes the other, who then is no owner to act: no deadlock
    assert organization.memberships.filter(role=Role.OWNER).count() == 1


def test_the_audit_log_records_who_did_what_from_where(organization, customer, other_customer):
    owner = member_client(customer, organization)
    link = invite(owner, other_customer.email)
    invitee = Client(REMOTE_ADDR="203.0.113.9")
    invitee.force_login(other_customer)
    invitee.post(link)
    owner.post(reverse("tokens"), {"name": "ci"})
    token = organization.tokens.get(name="ci")
    owner.post(reverse("token_restrictions", args=[token.pk]), {"name": "ci", "per_minute": "5"})
    owner.post(reverse("rotate_token", args=[token.pk]))
    owner.post(reverse("revoke_token", args=[token.pk]))
    grace = organization.memberships.get(user=other_customer)
    owner.post(reverse("change_role", args=[grace.pk]), {"role": Role.BILLING})
    owner.post(reverse("remove_member", args=[grace.pk]))
    billing = customer_of(organization)
    now = int(time.time())
    billing.stripe_subscription = {
        "status": "active",
        "current_period_start": now,
        "current_period_end": now + 30 * 24 * 3600,
        "items": {"data": [{"price": {"id": "price_pro_monthly"}}]},
    }
    Plan.objects.filter(slug="pro").update(stripe_price_id="price_pro_monthly")
    apply_subscription(billing)

    events = list(organization.audit_events.order_by("pk").values_list("action", "actor", "ip"))
    assert [action for action, _, _ in events] == [
        Action.MEMBER_INVITED,
        Action.MEMBER_JOINED,
        Action.TOKEN_CREATED,
        Action.RESTRICTIONS_CHANGED,
        Action.TOKEN_ROTATED,
        Action.TOKEN_REVOKED,
        Action.ROLE_CHANGED,
        Action.MEMBER_REMOVED,
        Action.PLAN_CHANGED,
    ]
    assert events[1] == (Action.MEMBER_JOINED, other_customer.email, "203.0.113.9")
    assert all(
        actor == customer.email and ip == "127.0.0.1"
        for action, actor, ip in events
        if action not in {Action.MEMBER_JOINED, Action.PLAN_CHANGED}
    )
    assert events[-1][1:] == ("", None)  # Stripe's doing
    page = owner.get(reverse("audit_log")).content.decode()
    assert "Member joined" in page and "203.0.113.9" in page and "5 calls per minute" in page
    assert "Free → Pro" in page

"""Organizations: the current one's members, invitations and audit log; switching, creating, joining."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.forms import InvitationForm, OrganizationForm, RoleForm
from accounts.models import PERMISSIONS, AuditEvent, Invitation, Membership, Organization, Role
from accounts.organizations import (
    INVITATION_DAYS,
    SESSION_KEY,
    current_membership,
    invitation_link_token,
    invitation_of,
    member_can,
    record,
    switch_to,
)

Action = AuditEvent.Action


@member_can("usage")
def organization(request: HttpRequest) -> HttpResponse:
    return _organization_page(request, InvitationForm(organization=request.organization))


@member_can("members")
@require_POST
def invite(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = InvitationForm(request.POST, organization=organization)
    if not form.is_valid():
        return _organization_page(request, form)
    email, role = form.cleaned_data["email"], form.cleaned_data["role"]
    name = " ".join(organization.name.split())  # one line: a header
    with transaction.atomic():  # no invitation without its e-mail
        organization.invitations.filter(email=email, accepted_at__isnull=True).delete()  # the new link replaces them
        invitation = Invitation.objects.create(
            organization=organization, email=email, role=role, invited_by=request.user
        )
        link = request.build_absolute_uri(reverse("invitation", args=[invitation_link_token(invitation)]))
        role_name = invitation.get_role_display().lower()
        try:
            send_mail(
                f"{request.user.email} invites you to {name} on NLP API",
                f"{request.user.email} invites you to join {name} as {role_name}.\n\n"
                f"Accept within {INVITATION_DAYS} days (the link works once):\n{link}\n",
                None,
                [email],
            )
        except OSError:  # the mail server
            transaction.set_rollback(True)
            messages.error(request, f"The invitation to {email} could not be e-mailed. Please try again.")
            return redirect("organization")
        record(request, organization, Action.MEMBER_INVITED, f"{email} as {role_name}")
    messages.success(request, f"Invitation e-mailed to {email}. The link works once, for {INVITATION_DAYS} days.")
    return redirect("organization")


@member_can("members")
@require_POST
def cancel_invitation(request: HttpRequest, invitation_id: int) -> HttpResponse:
    get_object_or_404(request.organization.invitations, pk=invitation_id, accepted_at__isnull=True).delete()
    messages.success(request, "Invitation cancelled: its link no longer works.")
    return redirect("organization")


@member_can("members")
@require_POST
def change_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("organization")
    role = form.cleaned_data["role"]
    with transaction.atomic():
        member = _member(request, membership_id)
        if member.role == role:
            return redirect("organization")
        if _is_last_owner(member):
            messages.error(request, f"{member.user} is the last owner: make another member owner first.")
            return redirect("organization")
        before = member.get_role_display().lower()
        member.role = role
        member.save(update_fields=["role"])
    subject = f"{member.user}: {before} → {member.get_role_display().lower()}"
    record(request, request.organization, Action.ROLE_CHANGED, subject)
    messages.success(request, f"{member.user} is now {member.get_role_display().lower()}.")
    return redirect("organization")


@member_can("members")
@require_POST
def remove_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    with transaction.atomic():
        member = _member(request, membership_id)
        if _is_last_owner(member):
            messages.error(request, f"{member.user} is the last owner: make another member owner first.")
            return redirect("organization")
        member.delete()
    record(request, request.organization, Action.MEMBER_REMOVED, str(member.user))
    if not request.htmx:  # htmx swaps the page's content: the list shows it, a message would wait for a full page
        messages.success(request, f"{member.user} is no longer a member of {request.organization}.")
    return redirect("organization")


@member_can("usage")
@require_POST
def leave(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    with transaction.atomic():
        _lock(organization)
        member = get_object_or_404(Membership.objects.select_related("user"), pk=request.membership.pk)
        if _is_last_owner(member):  # a 403 page saying so (htmx: the alert)
            raise PermissionDenied("You are the last owner: make another member owner before you leave.")
        member.delete()
    record(request, organization, Action.MEMBER_REMOVED, f"{request.user} (left)")
    request.session.pop(SESSION_KEY, None)
    messages.success(request, f"You left {organization}.")
    url = reverse("organizations")  # a whole page: the menu was the organization's
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@member_can("audit")
def audit_log(request: HttpRequest) -> HttpResponse:
    page = Paginator(request.organization.audit_events.all(), 50).get_page(request.GET.get("page"))
    return TemplateResponse(request, "accounts/audit_log.html", {"page": page})


@login_required
def organizations(request: HttpRequest) -> HttpResponse:
    """The user's organizations, to switch between, and a new one."""
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            created = form.save()
            Membership.objects.create(organization=created, user=request.user, role=Role.OWNER)
        switch_to(request, created)
        messages.success(request, f"{created} is created; you are its owner and work in it now.")
        return redirect("dashboard")
    context = {
        "form": form,
        "memberships": request.user.memberships.select_related("organization").order_by("organization__name"),
        "current": current_membership(request),
    }
    return TemplateResponse(request, "accounts/organizations.html", context)


@login_required
@require_POST
def switch(request: HttpRequest) -> HttpResponse:
    """Work in another of the user's organizations; the session remembers it."""
    chosen = request.POST.get("organization", "")
    membership = get_object_or_404(
        request.user.memberships.select_related("organization"),
        organization_id=int(chosen) if chosen.isascii() and chosen.isdigit() else None,  # None: nobody's
    )
    switch_to(request, membership.organization)
    messages.success(request, f"You are working in {membership.organization}.")
    return redirect("dashboard")


def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """An invitation link: accepted (POST) by the invitee logged in with its e-mail address."""
    found = invitation_of(token)
    context = {"invitation": found, "token": token}
    if found is None or not request.user.is_authenticated:
        return TemplateResponse(request, "accounts/invitation.html", context, status=404 if found is None else 200)
    if request.user.email.lower() != found.email:  # an address saved by staff may have capitals
        context["wrong_user"] = True
        return TemplateResponse(request, "accounts/invitation.html", context, status=403)
    if request.method != "POST":
        return TemplateResponse(request, "accounts/invitation.html", context)
    with transaction.atomic():
        # Once: of two accepting at the same moment (two tabs), the second finds it used.
        used = Invitation.objects.filter(pk=found.pk, accepted_at__isnull=True).update(accepted_at=timezone.now())
        if not used:
            return TemplateResponse(request, "accounts/invitation.html", {"token": token}, status=404)
        _, joined = Membership.objects.get_or_create(
            organization=found.organization, user=request.user, defaults={"role": found.role}
        )
        if joined:
            record(
                request,
                found.organization,
                Action.MEMBER_JOINED,
                f"{request.user} as {found.get_role_display().lower()}",
            )
    switch_to(request, found.organization)
    messages.success(request, f"Welcome to {found.organization}: you are {found.get_role_display().lower()}.")
    return redirect("dashboard")


def _organization_page(request: HttpRequest, invite_form: InvitationForm) -> HttpResponse:
    organization = request.organization
    context = {
        "members": organization.memberships.select_related("user").order_by("user__email"),
        "invitations": organization.invitations.filter(accepted_at__isnull=True).select_related("invited_by"),
        "invite_form": invite_form,
        "roles": Role.choices,
        "can_manage": request.membership.can("members"),
    }
    return TemplateResponse(request, "accounts/organization.html", context)


def _member(request: HttpRequest, membership_id: int) -> Membership:
    """A membership of the current organization, for a change in this transaction; 404 for any other.

    The organization's row is locked first: its membership changes run one at a time, so two owners
    demoting each other at once cannot both pass the last-owner check (nor deadlock), and one
    demoted or removed meanwhile can no longer act."""
    _lock(request.organization)
    if not Membership.objects.filter(pk=request.membership.pk, role__in=PERMISSIONS["members"]).exists():
        raise PermissionDenied("You are no longer an owner of this organization.")
    return get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, organization=request.organization
    )


def _lock(organization: Organization) -> None:
    Organization.objects.select_for_update().filter(pk=organization.pk).first()


def _is_last_owner(member: Membership) -> bool:
    """Whether demoting or removing `member` would leave the organization without an owner."""
    owners = Membership.objects.filter(organization_id=member.organization_id, role=Role.OWNER)
    return member.role == Role.OWNER and owners.count() <= 1

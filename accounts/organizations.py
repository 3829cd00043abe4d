"""The organization a request works in, what its member may do there, and its audit log.

A user works in one organization at a time: the session remembers the one they
switched to, else it is the first they joined (their personal one). Every page,
CSV and fragment is scoped to it; another organization's object is a 404.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import redirect

from accounts.models import PERMISSIONS, AuditEvent, Invitation, Membership, Organization
from core.proxy import client_ip

SESSION_KEY = "organization"
INVITATION_SALT = "accounts.invitation"
INVITATION_DAYS = 7
DENIED = {
    "tokens": "manage API tokens",
    "billing": "see or change billing",
    "members": "manage members",
    "audit": "see the audit log",
    "usage": "see usage",
}


def current_membership(request: HttpRequest) -> Membership | None:
    """The logged-in user's membership in the organization they work in; None if they have none."""
    if not hasattr(request, "_membership"):
        memberships = Membership.objects.select_related("organization").filter(user=request.user)
        chosen = request.session.get(SESSION_KEY)
        request._membership = (chosen and memberships.filter(organization_id=chosen).first()) or memberships.first()
    return request._membership


def navigation(request: HttpRequest) -> dict:
    """Template context: the current membership and what its role allows (the menu shows just that)."""
    if not request.user.is_authenticated:
        return {}
    membership = current_membership(request)
    allowed = {action for action in PERMISSIONS if membership and membership.can(action)}
    return {"membership": membership, "allowed": allowed}


def switch_to(request: HttpRequest, organization: Organization) -> None:
    request.session[SESSION_KEY] = organization.pk
    request.__dict__.pop("_membership", None)


def member_can(action: str):
    """A view for logged-in members whose role allows `action` (accounts.models.PERMISSIONS) in their
    current organization, set as request.membership and request.organization. Another role gets a
    403 page saying why (htmx shows it in the alert); a user in no organization goes to the page
    where they create one."""

    def decorator(view):
        @wraps(view)
        @login_required
        def checked(request: HttpRequest, *args, **kwargs):
            membership = current_membership(request)
            if membership is None:  # removed from their last one: create one, or accept an invitation
                return redirect("organizations")
            if not membership.can(action):
                raise PermissionDenied(
                    f"As {membership.get_role_display().lower()} of {membership.organization} you cannot "
                    f"{DENIED[action]}. Ask an owner for another role."
                )
            request.membership, request.organization = membership, membership.organization
            return view(request, *args, **kwargs)

        return checked

    return decorator


def record(request: HttpRequest | None, organization: Organization, action: str, subject: str) -> AuditEvent:
    """An audit event by the request's user from its client address; without a request, by the system."""
    return AuditEvent.objects.create(
        organization=organization,
        action=action,
        subject=subject[:300],
        actor=request.user.email if request else "",
        ip=(client_ip(request) or None) if request else None,
    )


def invitation_link_token(invitation: Invitation) -> str:
    return signing.dumps(invitation.pk, salt=INVITATION_SALT)


def invitation_of(token: str) -> Invitation | None:
    """The invitation a link names, if the link is genuine, unexpired and not used yet."""
    try:
        pk = signing.loads(token, salt=INVITATION_SALT, max_age=INVITATION_DAYS * 24 * 3600)
    except signing.BadSignature:  # SignatureExpired included
        return None
    return Invitation.objects.select_related("organization").filter(pk=pk, accepted_at__isnull=True).first()

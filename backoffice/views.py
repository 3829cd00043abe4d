"""Pages that draw on several apps (the dashboard, sign-up), and the error pages."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.forms import SignupForm
from accounts.models import Organization
from accounts.organizations import invitation_of, member_can
from backoffice.quota_alerts import current_alerts
from billing.customers import start_billing
from billing.models import Customer, Plan
from usage.charts import quotas
from usage.queries import allowed_and_refused, recent_refusals


@member_can("usage")
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    organization = request.organization
    customer = Customer.objects.filter(organization=organization).first()
    context = {
        "plan": Plan.objects.of(organization),
        "customer": customer,
        "quota_alerts": current_alerts(customer, now) if customer else [],
        "quotas": quotas(organization, now),
        "today": allowed_and_refused(organization.pk, midnight).rows()[0],
        "refusals": recent_refusals(organization.pk, now - timedelta(days=7)).rows(),
        "tokens": organization.tokens.active(),
        "api_base_url": settings.API_BASE_URL,
    }
    return TemplateResponse(request, "dashboard.html", context)


def signup(request: HttpRequest) -> HttpResponse:
    """A user with their personal organization (accounts), its billing started (billing).

    From an invitation link (?next=/invitations/...), the e-mail is the invitation's and the
    new user lands on the invitation to accept it."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    next_url = request.POST.get("next") or request.GET.get("next", "")
    token = next_url.removeprefix("/invitations/").removesuffix("/")
    invitation = invitation_of(token) if next_url.startswith("/invitations/") else None
    next_url = reverse("invitation", args=[token]) if invitation else ""  # never anywhere else
    form = SignupForm(request.POST or None, initial={"email": invitation.email if invitation else ""})
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            organization = Organization.create_personal(user)
        start_billing(organization)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(next_url or "tokens")
    return TemplateResponse(request, "accounts/signup.html", {"form": form, "next": next_url})


# Error pages, in the site's layout. 400 and 500 are rendered without the request, as Django's own
# are: the request may be what is broken, and a 500 must not reach for the database (the session,
# the user), which may be why it happened; those pages show no one's menu.
ERRORS = {
    400: ("Bad request", "The request could not be understood. Check the address and try again."),
    403: ("Access denied", "You do not have access to this page."),
    404: ("Not found", "What you asked for does not exist, or no longer does."),
    500: ("Something went wrong", "An error on our side stopped this request. Please try again in a few minutes."),
}


def error_page(status: int, request: HttpRequest | None = None, message: str | None = None) -> HttpResponse:
    title, default_message = ERRORS[status]
    context = {"title": title, "message": message or default_message}
    return HttpResponse(render_to_string("error.html", context, request), status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_page(400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_page(403, request, str(exception) or None)  # a view's PermissionDenied says why


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_page(404, request)


def server_error(request: HttpRequest) -> HttpResponse:
    return error_page(500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # The token changes at each log-in: a page loaded before one (in another tab, say) sends the old one.
    message = (
        "This form could not be verified: you logged in since the page was loaded (in another tab, say), "
        "or cookies are blocked. Reload the page and send it again."
    )
    return error_page(403, request, message)

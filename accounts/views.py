from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.forms import SupportForm, TokenForm, TokenRestrictionsForm
from accounts.models import ApiToken, AuditEvent, SupportMessage, User
from accounts.organizations import member_can, record


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "accounts/account.html")


@member_can("tokens")
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token, secret = ApiToken.issue(request.organization, created_by=request.user, **form.cleaned_data)
        record(request, request.organization, AuditEvent.Action.TOKEN_CREATED, str(token))
        return _tokens_page(request, TokenForm(), issued=(token, secret))
    return _tokens_page(request, form)


@member_can("tokens")
@require_POST
def rotate_token(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token(request, token_id)
    old = str(token)
    secret = token.rotate()
    record(request, request.organization, AuditEvent.Action.TOKEN_ROTATED, f"{old}, now {token.prefix}…")
    return _tokens_page(request, TokenForm(), issued=(token, secret))


@member_can("tokens")
def token_restrictions(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token(request, token_id)
    form = TokenRestrictionsForm(request.POST or None, instance=token)
    if request.method == "POST" and form.is_valid():
        form.save()
        record(request, request.organization, AuditEvent.Action.RESTRICTIONS_CHANGED, token.restrictions_text())
        messages.success(request, f"Restrictions of “{token.name}” saved. Calls obey them within seconds.")
        return redirect("tokens")
    return TemplateResponse(request, "accounts/token_restrictions.html", {"form": form, "token": token})


@member_can("tokens")
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token(request, token_id)
    token.revoke()
    record(request, request.organization, AuditEvent.Action.TOKEN_REVOKED, str(token))
    if not request.htmx:
        return redirect("tokens")
    return _tokens_page(request, TokenForm())


@login_required
def support(request: HttpRequest) -> HttpResponse:
    form = SupportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        message = form.save(commit=False)
        message.user = request.user
        message.save()
        notify_staff(
            message, request.build_absolute_uri(reverse("admin:accounts_supportmessage_change", args=[message.pk]))
        )
        messages.success(request, "Message sent. We answer within one working day, here and by e-mail.")
        return redirect("support")
    context = {"form": form, "support_messages": request.user.support_messages.all()}
    return TemplateResponse(request, "accounts/support.html", context)


def notify_staff(message: SupportMessage, admin_url: str) -> None:
    recipients = (
        [settings.SUPPORT_EMAIL]
        if settings.SUPPORT_EMAIL
        else list(User.objects.filter(is_staff=True, is_active=True).values_list("email", flat=True))
    )
    send_mail(
        f"[Support] {message.subject}",
        f"From {message.user.email}:\n\n{message.message}\n\nAnswer in the admin: {admin_url}",
        None,
        recipients,
    )


def _get_token(request: HttpRequest, token_id: int) -> ApiToken:
    """One of the organization's active tokens; 404 for any other."""
    return get_object_or_404(ApiToken.objects.active(), pk=token_id, organization=request.organization)


def _tokens_page(request: HttpRequest, form: TokenForm, issued: tuple[ApiToken, str] | None = None) -> HttpResponse:
    context = {
        "form": form,
        "tokens": request.organization.tokens.select_related("created_by"),
        "issued_token": issued[0] if issued else None,
        "issued_secret": issued[1] if issued else None,
    }
    return TemplateResponse(request, "accounts/tokens.html", context)

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
from accounts.models import ApiToken, SupportMessage, User


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "accounts/account.html")


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token, secret = ApiToken.issue(request.user, **form.cleaned_data)
        return _tokens_page(request, TokenForm(), issued=(token, secret))
    return _tokens_page(request, form)


@login_required
@require_POST
def rotate_token(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token(request, token_id)
    return _tokens_page(request, TokenForm(), issued=(token, token.rotate()))


@login_required
def token_restrictions(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token(request, token_id)
    form = TokenRestrictionsForm(request.POST or None, instance=token)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Restrictions of “{token.name}” saved. Calls obey them within seconds.")
        return redirect("tokens")
    return TemplateResponse(request, "accounts/token_restrictions.html", {"form": form, "token": token})


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    _get_token(request, token_id).revoke()
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
    """One of the user's active tokens; 404 for anyone else's."""
    return get_object_or_404(ApiToken.objects.active(), pk=token_id, user=request.user)


def _tokens_page(request: HttpRequest, form: TokenForm, issued: tuple[ApiToken, str] | None = None) -> HttpResponse:
    context = {
        "form": form,
        "tokens": request.user.tokens.all(),
        "issued_token": issued[0] if issued else None,
        "issued_secret": issued[1] if issued else None,
    }
    return TemplateResponse(request, "accounts/tokens.html", context)

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from accounts.forms import SignupForm, TokenForm
from accounts.models import ApiToken
from billing import stripe_api


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        stripe_api.start_billing(user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("tokens")
    return TemplateResponse(request, "accounts/signup.html", {"form": form})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "accounts/account.html")


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token, secret = ApiToken.issue(request.user, form.cleaned_data["name"])
        return _tokens_page(request, TokenForm(), issued=(token, secret))
    return _tokens_page(request, form)


@login_required
@require_POST
def rotate_token(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token(request, token_id)
    return _tokens_page(request, TokenForm(), issued=(token, token.rotate()))


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    _get_token(request, token_id).revoke()
    if not request.htmx:
        return redirect("tokens")
    return _tokens_page(request, TokenForm())


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

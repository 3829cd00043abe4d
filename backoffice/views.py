from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "dashboard.html", {"tokens": request.user.tokens.active()})

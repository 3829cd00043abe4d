from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect

CONTENT_PARTIAL = "content"
NOT_FOR_HISTORY = b'hx-history="false"'


class HtmxPageMiddleware:
    """Answers an htmx request with the page's fragment, anything else with the full page.

    Every page template defines its content as `{% partialdef content inline %}`
    inside its content block, and may name smaller fragments after the element
    ids that htmx swaps (`hx-target="#usage-report"` -> partial `usage-report`);
    a history restore (htmx re-fetching a page it no longer has cached) gets the
    full page. A session that expired during an htmx request sends the browser
    to the login page instead of swapping the login form into the content area.
    A page that htmx must not keep in its history (hx-history="false": a token's
    secret) is kept by no browser cache either (no-store).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.htmx and response.status_code == 302 and self._is_login_redirect(response):
            response = HttpResponseClientRedirect(response["Location"])
        if NOT_FOR_HISTORY in getattr(response, "content", b""):  # streaming responses have no content
            add_never_cache_headers(response)
        patch_vary_headers(response, ["HX-Request"])
        return response

    def process_template_response(self, request: HttpRequest, response: TemplateResponse) -> TemplateResponse:
        if request.htmx and not request.htmx.history_restore_request:
            names = [response.template_name] if isinstance(response.template_name, str) else response.template_name
            # The partial named like the swap's target (a chart inside a page, say), else the
            # content; a template without either (admin, say) falls back to its full page.
            partials = [request.htmx.target, CONTENT_PARTIAL] if request.htmx.target else [CONTENT_PARTIAL]
            response.template_name = [f"{name}#{partial}" for partial in partials for name in names] + list(names)
        return response

    @staticmethod
    def _is_login_redirect(response: HttpResponse) -> bool:
        return response["Location"].split("?")[0] == resolve_url(settings.LOGIN_URL)

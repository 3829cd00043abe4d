from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.template.context import make_context
from django.template.loader_tags import BlockNode
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect

CONTENT_PARTIAL = "content"
TITLE = "{} · NLP API"  # as base.html's <title>
NOT_FOR_HISTORY = b'hx-history="false"'


class HtmxPageMiddleware:
    """Answers an htmx request with the page's fragment, anything else with the full page.

    Every page template defines its content as `{% partialdef content inline %}`
    inside its content block, and may name smaller fragments after the element
    ids that htmx swaps (`hx-target="#usage-report"` -> partial `usage-report`);
    a history restore (htmx re-fetching a page it no longer has cached) gets the
    full page. A session that expired during an htmx request sends the browser
    to the login page (ours or the admin's, for staff pages) as a full page,
    instead of swapping the login form into the page it left.
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
            if request.htmx.target in (None, CONTENT_PARTIAL) and (title := page_title(response, request)):
                # htmx sets the document's title from a <title> in what it swaps in.
                response.add_post_render_callback(lambda page: setattr(page, "content", title + page.content))
            response.template_name = [f"{name}#{partial}" for partial in partials for name in names] + list(names)
        return response

    @staticmethod
    def _is_login_redirect(response: HttpResponse) -> bool:
        return urlsplit(response["Location"]).path in (resolve_url(settings.LOGIN_URL), reverse("admin:login"))


def page_title(response: TemplateResponse, request: HttpRequest) -> bytes | None:
    """The page template's title block, rendered alone, as a <title> element; None without one."""
    template = response.resolve_template(response.template_name).template
    block = next((node for node in template.nodelist.get_nodes_by_type(BlockNode) if node.name == "title"), None)
    if block is None:
        return None
    context = make_context(response.context_data, request)
    with context.bind_template(template):
        return f"<title>{TITLE.format(block.render(context).strip())}</title>".encode()  # escaped as rendered


class ContentSecurityPolicyMiddleware:
    """A strict Content-Security-Policy on every HTML response: scripts and styles only from our own files.

    Nothing inline runs or applies (no <script> blocks, event handler or style
    attributes), so markup injected into a page cannot run code. htmx is set up
    for it in base.html: no eval, no <style> element of its own.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = self.policy()
        return response

    @staticmethod
    def policy() -> str:
        return "; ".join(
            [
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data:",  # base.html's empty favicon
                "object-src 'none'",
                "base-uri 'self'",
                "frame-ancestors 'none'",
                # Billing's forms are answered with redirects to Stripe's Checkout and Portal,
                # and browsers apply form-action to where a form's redirects lead too.
                f"form-action 'self' {stripe_pages()}",
            ]
        )


def stripe_pages() -> str:
    """The origins of Stripe's hosted pages; a STRIPE_API_BASE elsewhere (tests) serves them too."""
    api = urlsplit(settings.STRIPE_API_BASE)
    if api.netloc == "api.stripe.com":
        return "https://checkout.stripe.com https://billing.stripe.com"
    return f"{api.scheme}://{api.netloc}"

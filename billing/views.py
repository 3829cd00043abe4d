import logging

import stripe
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.organizations import member_can
from billing.customers import customer_of, ensure_stripe_customer, sync
from billing.forms import QuotaAlertsForm
from billing.models import Plan
from billing.plan_changes import checkout_url, complete_checkout, portal_url, switch_plan
from billing.stripe_client import enabled
from billing.webhooks import is_event, process, receive
from core.json_bodies import Refused, parse_json, problem_response, read_body

log = logging.getLogger(__name__)


@member_can("billing")
def billing_page(request: HttpRequest) -> HttpResponse:
    customer = customer_of(request.organization)
    if session_id := request.GET.get("session_id"):  # back from Checkout
        try:
            complete_checkout(customer, session_id)
            messages.success(request, f"Welcome to {customer.plan}! Your new limits apply now.")
        except stripe.StripeError:
            messages.info(request, "Your payment is being confirmed; the new plan applies in a moment.")
        return redirect("billing")
    return _billing_page(request, customer, QuotaAlertsForm(instance=customer))


@member_can("billing")
@require_POST
def quota_alerts(request: HttpRequest) -> HttpResponse:
    customer = customer_of(request.organization)
    form = QuotaAlertsForm(request.POST, instance=customer)
    if not form.is_valid():
        return _billing_page(request, customer, form)
    form.save()
    messages.success(request, "Your quota alerts are saved.")
    return redirect("billing")


def _billing_page(request: HttpRequest, customer, alerts_form: QuotaAlertsForm) -> HttpResponse:
    context = {
        "customer": customer,
        "plans": Plan.objects.exclude(stripe_price_id="").prefetch_related("endpoint_limits"),
        "billing_enabled": enabled(),
        "alerts_form": alerts_form,
    }
    return TemplateResponse(request, "billing/billing.html", context)


@member_can("billing")
@require_POST
def choose_plan(request: HttpRequest, slug: str) -> HttpResponse:
    """A paid plan: Checkout for a first subscription, else a confirmation of the switch."""
    plan = get_object_or_404(Plan.objects.exclude(stripe_price_id=""), slug=slug)
    customer = _billable(request)
    if customer is None:
        return redirect("billing")
    try:
        sync(customer)  # a subscription started in another tab is a switch, not a second subscription
    except stripe.StripeError:
        return _stripe_unavailable(request)
    if customer.is_paying:
        return redirect("confirm_plan", slug=plan.slug)
    billing_url = request.build_absolute_uri(reverse("billing"))
    try:
        url = checkout_url(customer, plan, f"{billing_url}?session_id={{CHECKOUT_SESSION_ID}}", billing_url)
    except stripe.StripeError:
        return _stripe_unavailable(request)
    return _leave_for(request, url)


@member_can("billing")
def confirm_plan(request: HttpRequest, slug: str) -> HttpResponse:
    """Switching between paid plans in the app: confirm, then the subscription changes, prorated."""
    plan = get_object_or_404(Plan.objects.exclude(stripe_price_id=""), slug=slug)
    customer = _billable(request)
    if customer is None or not customer.is_paying:
        return redirect("billing")
    if request.method == "POST":
        try:
            switch_plan(customer, plan)
        except stripe.StripeError:
            return _stripe_unavailable(request)
        try:
            sync(customer)
            messages.success(request, f"You are now on {plan}. The difference is prorated on your next invoice.")
        except stripe.StripeError:  # switched at Stripe; the webhook or reconciliation brings it here
            messages.info(request, f"Switched to {plan}; your new limits apply within a few minutes.")
        return redirect("billing")
    return TemplateResponse(request, "billing/confirm.html", {"customer": customer, "plan": plan})


@member_can("billing")
@require_POST
def portal(request: HttpRequest) -> HttpResponse:
    customer = _billable(request)
    if customer is None:
        return redirect("billing")
    try:
        url = portal_url(customer, request.build_absolute_uri(reverse("billing")))
    except stripe.StripeError:
        return _stripe_unavailable(request)
    return _leave_for(request, url)


MAX_WEBHOOK_BYTES = 1024 * 1024  # Stripe's events weigh kilobytes: a wide margin


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verified on the raw body (stale timestamps refused), stored by id, processed once.

    Not stripe.Webhook.construct_event: it json-parses the body with no bound on
    depth (RecursionError) and wraps it in StripeObjects; the payload is parsed
    and checked here once the signature holds, then stored as it came.
    """
    if not settings.STRIPE_WEBHOOK_SECRET:  # an empty key would accept anyone's signature
        return problem_response(503, "Webhooks not configured", "Stripe webhooks are not configured here.")
    try:
        body = read_body(request, MAX_WEBHOOK_BYTES)
        signature = request.headers.get("Stripe-Signature", "")
        stripe.WebhookSignature.verify_header(body.decode(), signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=300)
        payload = parse_json(body)
    except Refused as refused:
        return refused.response
    except (UnicodeDecodeError, stripe.SignatureVerificationError):  # Stripe signs UTF-8 text
        return problem_response(400, "Bad signature", "The Stripe-Signature is missing, wrong or stale.")
    if not is_event(payload):
        return problem_response(
            400, "Not a Stripe event", "Expected an event: an id (1 to 100 characters), a type, data.object."
        )
    stored = receive(payload)
    if stored is not None:
        process(stored.id)
    return JsonResponse({"received": payload["id"]})


def _billable(request: HttpRequest):
    """The organization's customer with its Stripe customer (created now if sign-up could not); None if Stripe is out of reach."""
    if not enabled():
        messages.error(request, "Billing is not configured on this server.")
        return None
    try:
        return ensure_stripe_customer(request.organization)
    except stripe.StripeError:
        _stripe_unavailable(request)
        return None


def _stripe_unavailable(request: HttpRequest) -> HttpResponse:
    log.exception("Stripe call failed")
    messages.error(request, "Our payment provider cannot be reached right now. Nothing was changed; please try again.")
    return redirect("billing")


def _leave_for(request: HttpRequest, url: str) -> HttpResponse:
    """Redirect to Stripe; htmx is told to leave the app rather than swap Stripe's page in."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)

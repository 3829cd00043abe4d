import json

import stripe
from django.contrib import admin, messages
from django.utils.html import format_html

from billing.customers import ensure_stripe_customer, sync
from billing.models import Customer, EndpointLimit, MeterReport, Plan, QuotaAlert, WebhookEvent


def pretty_json(value) -> str:
    """Cached Stripe JSON, readable and collapsed until asked for."""
    if not value:
        return "—"
    return format_html(
        '<details><summary>Show JSON</summary><pre class="json">{}</pre></details>',
        json.dumps(value, indent=2, sort_keys=True),
    )


class EndpointLimitInline(admin.TabularInline):
    model = EndpointLimit
    extra = 0


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "price_label",
        "per_minute",
        "per_hour",
        "per_day",
        "per_month",
        "concurrency",
        "metered",
        "is_default",
    ]
    list_editable = ["per_minute", "per_hour", "per_day", "per_month", "concurrency"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [EndpointLimitInline]


@admin.action(description="Sync from Stripe")
def sync_customers(modeladmin, request, queryset):
    for customer in queryset:
        try:
            if customer.stripe_id:
                sync(customer)
            else:
                ensure_stripe_customer(customer.organization)
            modeladmin.message_user(
                request, f"{customer.organization}: synced, plan {Customer.objects.get(pk=customer.pk).plan}."
            )
        except stripe.StripeError as error:
            modeladmin.message_user(request, f"{customer.organization}: Stripe failed: {error}", messages.ERROR)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["organization", "plan", "stripe_id", "subscription_status", "current_period_end", "synced_at"]
    list_filter = ["plan"]
    search_fields = ["organization__name", "organization__members__email", "stripe_id"]
    list_select_related = ["organization", "plan"]
    autocomplete_fields = ["organization"]
    actions = [sync_customers]
    readonly_fields = [
        "stripe_id",
        "synced_at",
        "customer_json",
        "subscription_json",
        "invoices_json",
        "upcoming_invoice_json",
    ]
    exclude = ["stripe_customer", "stripe_subscription", "stripe_invoices", "stripe_upcoming_invoice"]

    @admin.display(description="Stripe customer")
    def customer_json(self, customer):
        return pretty_json(customer.stripe_customer)

    @admin.display(description="Stripe subscription")
    def subscription_json(self, customer):
        return pretty_json(customer.stripe_subscription)

    @admin.display(description="Invoices")
    def invoices_json(self, customer):
        return pretty_json(customer.stripe_invoices)

    @admin.display(description="Next invoice")
    def upcoming_invoice_json(self, customer):
        return pretty_json(customer.stripe_upcoming_invoice)


class ProcessedFilter(admin.SimpleListFilter):
    title = "processing"
    parameter_name = "processed"

    def lookups(self, request, model_admin):
        return [("yes", "Processed"), ("no", "Waiting or failed")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(processed_at__isnull=self.value() == "no")
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "received_at", "processed_at", "error"]
    list_filter = [ProcessedFilter, "type"]
    search_fields = ["id", "type"]
    readonly_fields = ["id", "type", "received_at", "processed_at", "error", "payload_json"]
    exclude = ["payload"]

    @admin.display(description="Payload")
    def payload_json(self, event):
        return pretty_json(event.payload)

    def has_add_permission(self, request):
        return False


@admin.register(MeterReport)
class MeterReportAdmin(admin.ModelAdmin):
    list_display = ["customer", "hour", "sequence", "words", "reported_at", "identifier"]
    list_filter = ["reported_at"]
    search_fields = ["customer__organization__name", "identifier"]
    list_select_related = ["customer__organization"]
    readonly_fields = ["customer", "hour", "sequence", "words", "dated", "identifier", "reported_at"]

    def has_add_permission(self, request):
        return False


@admin.register(QuotaAlert)
class QuotaAlertAdmin(admin.ModelAdmin):
    list_display = ["customer", "measure", "threshold", "used", "quota", "period_start", "reached_at", "sent_at"]
    list_filter = ["measure", "threshold", "sent_at"]
    search_fields = ["customer__organization__name"]
    list_select_related = ["customer__organization"]
    readonly_fields = ["customer", "measure", "threshold", "period_start", "used", "quota", "reached_at", "sent_at"]

    def has_add_permission(self, request):
        return False

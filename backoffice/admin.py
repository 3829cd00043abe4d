"""The admin's customer page: a user with their billing, tokens, messages and usage (every app, so above them)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.admin import ApiTokenInline, SupportMessageInline
from accounts.models import User
from billing.admin import pretty_json, sync_customers
from billing.models import Customer
from usage.charts import UsageReport
from usage.queries import RANGES


class CustomerInline(admin.StackedInline):
    """Billing at a glance; setting the plan here overrides it until the next Stripe sync."""

    model = Customer
    can_delete = False
    fields = ["plan", "stripe_id", "subscription_status", "current_period_end", "synced_at", "subscription_json"]
    readonly_fields = ["stripe_id", "subscription_status", "current_period_end", "synced_at", "subscription_json"]

    @admin.display(description="Stripe subscription")
    def subscription_json(self, customer):
        return pretty_json(customer.stripe_subscription)


@admin.action(description="Sync from Stripe")
def sync_users(modeladmin, request, queryset):
    sync_customers(modeladmin, request, Customer.objects.filter(user__in=queryset))


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["-date_joined"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "date_joined", "last_login"]
    search_fields = ["email", "first_name", "last_name"]
    list_filter = ["is_staff", "is_active", "date_joined"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
        ("Usage", {"fields": ["usage"]}),
    ]
    readonly_fields = ["usage"]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    inlines = [CustomerInline, ApiTokenInline, SupportMessageInline]
    actions = [sync_users]

    @admin.display(description="Usage (30 days)")
    def usage(self, user):
        chart = UsageReport(RANGES["30d"], timezone.now(), user.pk).charts()[0]
        return format_html(
            '<div>{}</div><p>{} calls. <a href="{}">Charts, table and CSV of this customer\'s calls</a></p>',
            chart.svg(),
            f"{chart.total:,}",
            reverse("customer_usage", args=[user.pk]),
        )

"""The admin's customer page: an organization with its members, billing, tokens, audit log and usage
(every app, so above them); a user's page lists their organizations and support messages."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.admin import ApiTokenInline, AuditEventInline, MembershipInline, SupportMessageInline
from accounts.models import Organization, User
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
def sync_organizations(modeladmin, request, queryset):
    sync_customers(modeladmin, request, Customer.objects.filter(organization__in=queryset))


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    ordering = ["-created"]
    list_display = ["name", "is_active", "created"]
    search_fields = ["name", "members__email"]
    list_filter = ["is_active", "created"]
    fields = ["name", "is_active", "created", "usage"]
    readonly_fields = ["created", "usage"]
    inlines = [MembershipInline, CustomerInline, ApiTokenInline, AuditEventInline]
    actions = [sync_organizations]

    def get_search_results(self, request, queryset, search_term):
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False  # a search by members' e-mails matches once per member

    @admin.display(description="Usage (30 days)")
    def usage(self, organization):
        if organization.pk is None:
            return "-"
        chart = UsageReport(RANGES["30d"], timezone.now(), organization.pk).charts()[0]
        return format_html(
            '<div>{}</div><p>{} calls. <a href="{}">Charts, table and CSV of this organization\'s calls</a></p>',
            chart.svg(),
            f"{chart.total:,}",
            reverse("customer_usage", args=[organization.pk]),
        )


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
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    inlines = [MembershipInline, SupportMessageInline]

    def get_inlines(self, request, user):
        return self.inlines if user else []  # a new user's memberships: their personal organization, on save

    def save_model(self, request, user, form, change):
        """A user added here is made as sign-up makes one: e-mail in lower case, a personal organization."""
        user.email = user.email.lower()
        super().save_model(request, user, form, change)
        if not change:
            Organization.create_personal(user)

from django.contrib import admin

from billing.models import Customer, EndpointLimit, Plan


class EndpointLimitInline(admin.TabularInline):
    model = EndpointLimit
    extra = 0


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "per_minute", "per_hour", "per_day", "per_month", "concurrency", "metered", "is_default"]
    list_editable = ["per_minute", "per_hour", "per_day", "per_month", "concurrency"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [EndpointLimitInline]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["user", "plan", "current_period_start", "current_period_end"]
    list_filter = ["plan"]
    search_fields = ["user__email"]
    list_select_related = ["user", "plan"]
    autocomplete_fields = ["user"]

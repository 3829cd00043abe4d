from django.contrib import admin, messages
from django.core.mail import send_mail
from django.utils import timezone

from accounts.forms import StaffAuthenticationForm
from accounts.models import ApiToken, AuditEvent, Membership, SupportMessage

# /admin/login/ is throttled like /login/, with the same counters.
admin.site.login_form = StaffAuthenticationForm


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.action(description="Revoke selected tokens")
def revoke_tokens(modeladmin, request, queryset):
    count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    modeladmin.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    fields = ["name", "created_by", "prefix", "created", "last_used", "revoked_at"]
    readonly_fields = ["created_by", "prefix", "created", "last_used"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # a secret can only be shown to its owner, on the Tokens page


class SupportMessageInline(admin.TabularInline):
    model = SupportMessage
    fields = ["subject", "status", "created"]
    readonly_fields = ["subject", "status", "created"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.action(description="Close")
def close_messages(modeladmin, request, queryset):
    queryset.update(status=SupportMessage.Status.CLOSED)


@admin.register(SupportMessage)
class SupportMessageAdmin(admin.ModelAdmin):
    list_display = ["subject", "user", "status", "created", "answered_at"]
    list_filter = ["status", "created"]
    search_fields = ["subject", "message", "user__email"]
    list_select_related = ["user"]
    fields = ["user", "subject", "message", "created", "answer", "status", "answered_at"]
    readonly_fields = ["user", "subject", "message", "created", "answered_at"]
    actions = [close_messages]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, message, form, change):
        """A new answer is e-mailed to the customer and shown on their Support page."""
        if "answer" in form.changed_data and message.answer.strip():
            message.answered_at = timezone.now()
            if message.status == SupportMessage.Status.OPEN:
                message.status = SupportMessage.Status.ANSWERED
            send_mail(f"Re: {message.subject}", message.answer, None, [message.user.email])
        super().save_model(request, message, form, change)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "created_by", "prefix", "created", "last_used", "revoked_at"]
    list_filter = [ActiveFilter, "created", "last_used"]
    search_fields = ["name", "prefix", "organization__name", "created_by__email"]
    list_select_related = ["organization", "created_by"]
    # The restrictions are the customer's, set and validated on their Tokens page: shown here, not edited.
    restrictions = ["allowed_endpoints", "allowed_networks", "expires_on", "per_minute"]
    fields = ["organization", "created_by", "name", "prefix", "created", "last_used", "revoked_at", *restrictions]
    readonly_fields = ["organization", "created_by", "prefix", "created", "last_used", *restrictions]
    actions = [revoke_tokens]
    date_hierarchy = "created"

    def has_add_permission(self, request):
        return False  # tokens are created by their owner, who alone sees the secret


class MembershipInline(admin.TabularInline):
    """Members of an organization (on its page) or organizations of a user (on theirs)."""

    model = Membership
    fields = ["organization", "user", "role", "joined"]
    readonly_fields = ["joined"]
    autocomplete_fields = ["organization", "user"]
    extra = 0


class AuditEventInline(admin.TabularInline):
    """The organization's latest audit events, read-only like the log itself."""

    model = AuditEvent
    fields = ["created", "action", "subject", "actor", "ip"]
    readonly_fields = fields
    ordering = ["-created", "-pk"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Never editable: no add, change or delete here, and a trigger refuses any UPDATE."""

    list_display = ["created", "organization", "action", "subject", "actor", "ip"]
    list_filter = ["action", "created"]
    search_fields = ["organization__name", "subject", "actor", "ip"]
    list_select_related = ["organization"]
    date_hierarchy = "created"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

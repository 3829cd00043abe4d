from django.contrib import admin

from usage.models import DeadLetter


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Usage events the database refused (usage/recorder.py): read them, mend the cause; never edited here."""

    list_display = ["failed_at", "event", "error"]
    search_fields = ["event", "error"]
    date_hierarchy = "failed_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

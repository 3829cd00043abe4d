import secrets

from django.core.management.base import BaseCommand

from accounts.models import User


class Command(BaseCommand):
    help = "Create a demo customer and a staff user (once); print their credentials."

    def handle(self, *args, **options):
        for email, staff in [("demo@example.com", False), ("staff@example.com", True)]:
            if User.objects.filter(email=email).exists():
                continue
            password = secrets.token_urlsafe(12)
            create = User.objects.create_superuser if staff else User.objects.create_user
            create(email, password)
            role = "staff user (admin at /admin/)" if staff else "demo customer"
            self.stdout.write(self.style.SUCCESS(f"Created {role}: {email} / {password}"))

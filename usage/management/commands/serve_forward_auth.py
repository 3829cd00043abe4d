from django.core.management.base import BaseCommand

from usage import server


class Command(BaseCommand):
    help = "Serve forward-auth on $HOST:$PORT (0.0.0.0:8002): one event loop, usage written by a child process."

    def handle(self, *args, **options):
        server.main()

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
django_application = get_wsgi_application()

from usage.wsgi import with_forward_auth  # noqa: E402  (needs Django set up)

application = with_forward_auth(django_application)

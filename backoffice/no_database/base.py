"""The database backend while DATABASE_URL is unset: PostgreSQL's, except that it never connects.

Commands that need no database (collectstatic, check) run without one; the first
query stops with the same message as a missing setting, and a server fails to start.
"""

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):  # the first step of every connection, pooled or not
        raise ImproperlyConfigured("Set the DATABASE_URL environment variable.")

"""`make run`: serve the backoffice on localhost.

With DATABASE_URL unset, a real PostgreSQL from the `pgserver` wheel runs in
$DATA_DIR/postgres (default .data/) for as long as this process does. Migrates, creates the demo
users (credentials printed once) and serves on $PORT (default 8000).
"""

import os
import secrets
import signal
import sys
from pathlib import Path
from urllib.parse import quote

DATA_DIR = Path(os.environ.get("DATA_DIR") or Path(__file__).resolve().parent.parent / ".data")


def main() -> None:
    # Exit cleanly on SIGTERM too, so the embedded PostgreSQL is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    DATA_DIR.mkdir(exist_ok=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", _stable_secret_key())
    if not os.environ.get("DATABASE_URL"):
        import pgserver

        pgdata = DATA_DIR / "postgres"
        pgserver.get_server(pgdata)  # stops when this process exits
        os.environ["DATABASE_URL"] = f"postgres://postgres@{quote(str(pgdata), safe='')}/postgres"
        print(f"Embedded PostgreSQL in {pgdata}")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("seed_demo")
    call_command("runserver", f"127.0.0.1:{os.environ.get('PORT', '8000')}", use_reloader=False)


def _stable_secret_key() -> str:
    """A development key kept in .data/ so sessions survive restarts."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text()


if __name__ == "__main__":
    main()

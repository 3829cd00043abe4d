"""`make manage ARGS="..."` (`python -m backoffice.run manage ...`): management commands on make run's embedded database."""

import os
import subprocess
import sys

from django.conf import settings

from tests.servers import processes_using


def test_make_manage_changes_a_demo_password_in_the_embedded_database_and_stops_it(tmp_path):
    def manage(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        # No terminal (a session of its own): changepassword reads the password from stdin.
        return subprocess.run(
            [sys.executable, "-m", "backoffice.run", "manage", *args],
            input=input,
            cwd=settings.BASE_DIR,
            env={"PATH": os.environ["PATH"], "DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            start_new_session=True,
            timeout=180,
        )

    for step in [manage("migrate", "-v0"), manage("seed_demo")]:
        assert step.returncode == 0, step.stderr
    changed = manage("changepassword", "demo@example.com", input="a new demo password\n" * 2)
    assert changed.returncode == 0, changed.stderr
    assert "Password changed successfully for user 'demo@example.com'" in changed.stdout

    check = manage(
        "shell",
        "-v0",
        "-c",
        "from accounts.models import User; "
        "print(User.objects.get(email='demo@example.com').check_password('a new demo password'))",
    )
    assert check.stdout == "True\n", check.stderr  # stdout is the command's alone
    assert not processes_using(tmp_path), "the embedded PostgreSQL outlived the command"

"""`make run` serves a working site on an embedded PostgreSQL when no database is configured."""

import os
import re
import subprocess
import sys
import time
import urllib.request

from django.conf import settings

from tests.servers import free_port


def test_the_run_command_serves_the_site_on_an_embedded_database(tmp_path):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "DATA_DIR": str(tmp_path), "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "backoffice.run"], cwd=settings.BASE_DIR, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/") as response:
                    assert response.status == 200 and b"Log in" in response.read()
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert (tmp_path / "postgres" / "PG_VERSION").exists()
    assert not (tmp_path / "postgres" / "postmaster.pid").exists(), "the embedded PostgreSQL outlived the server"
    assert re.search(r"Created demo customer: demo@example.com / \S+", output)
    assert re.search(r"Created staff user .*: staff@example.com / \S+", output)

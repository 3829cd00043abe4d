"""A real Chromium (Debian's /usr/bin/chromium) driven by Playwright against the live server."""

import shutil

import pytest
from playwright.sync_api import sync_playwright

from backoffice.gateway import traefik_command
from tests.servers import free_port, nlp_api, traefik
from usage import forward_auth

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package.")
    # Playwright's sync API keeps an event loop in the test thread while it
    # runs; the ORM calls made beside it are still plain synchronous calls.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, transactional_db):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    yield page
    context.close()
    forward_auth.stop_service()  # started by calls to the live server; its threads use this test's database


@pytest.fixture
def page_with_bfcache(browser, live_server, transactional_db):
    """A page in a Chromium of its own whose back/forward cache is on (Playwright turns it off)."""
    with_bfcache = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu"],
        ignore_default_args=["--disable-back-forward-cache"],
    )
    yield with_bfcache.new_context(base_url=live_server.url).new_page()
    with_bfcache.close()
    forward_auth.stop_service()


@pytest.fixture
def api(tmp_path, live_server, settings, usage_store):
    """https://api.example.com as deployed: Traefik, with the shipped configuration, in front of the
    example NLP API, which reports quantities to the live server; answers the gateway's URL."""
    settings.USAGE_SERVICE_TOKEN = "svc-browser"
    gateway_port, nlp_port = free_port(), free_port()
    gateway = traefik_command(tmp_path, gateway_port, live_server.url, f"http://127.0.0.1:{nlp_port}", "127.0.0.1")
    with nlp_api(nlp_port, live_server.url, settings.USAGE_SERVICE_TOKEN), traefik(gateway, gateway_port, "127.0.0.1"):
        yield f"http://127.0.0.1:{gateway_port}"

"""The client's address comes through the configured number of trusted proxies, never from what clients write."""

import pytest
from django.test import RequestFactory

from core.proxy import client_ip


def request_from(remote_addr: str, forwarded_for: str | None = None):
    headers = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **headers)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request_from("198.51.100.7", "203.0.113.9")) == "198.51.100.7"


@pytest.mark.parametrize(
    "proxies, forwarded_for, expected",
    [
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "1.2.3.4, 203.0.113.9", "203.0.113.9"),  # the client forged the leftmost entry
        (2, "1.2.3.4,203.0.113.9 , 10.0.0.5", "203.0.113.9"),  # a CDN, then Traefik
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_the_client_is_as_many_hops_from_the_right_as_there_are_trusted_proxies(
    settings, proxies, forwarded_for, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    assert client_ip(request_from("10.0.0.2", forwarded_for)) == expected


@pytest.mark.parametrize("forwarded_for", [None, "", "not-an-ip", "203.0.113.9:443", "1.2.3.4, ", "999.1.1.1"])
def test_a_missing_or_malformed_header_falls_back_to_the_peer(settings, forwarded_for):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request_from("10.0.0.2", forwarded_for)) == "10.0.0.2"


def test_a_header_shorter_than_the_chain_of_proxies_falls_back_to_the_peer(settings):
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request_from("10.0.0.2", "203.0.113.9")) == "10.0.0.2"

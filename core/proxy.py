"""The client's address, as told by the reverse proxies we trust (TRUSTED_PROXY_COUNT)."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address that connected to the outermost of our trusted proxies.

    Each proxy appends the address it was connected from to X-Forwarded-For, so
    with N trusted proxies the client is the Nth entry from the right; anything
    further left was written by the client and may be forged. With no trusted
    proxy, or a header too short or malformed to hold that entry (a proxy
    missing or misconfigured), the peer's own address is used.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops == 0:
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < hops:
        return peer
    try:
        return str(ipaddress.ip_address(forwarded[-hops].strip()))
    except ValueError:
        return peer

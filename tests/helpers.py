"""Helpers shared by tests of several apps (fixtures stay in conftest.py files)."""

from usage.forward_auth import ForwardAuth
from usage.limiter import MemoryCounters
from usage.recorder import UsageRecorder


def forward_auth() -> ForwardAuth:
    """A forward-auth service on the test database, its usage events kept in memory."""
    return ForwardAuth(MemoryCounters(), fail_open=False, refresh_seconds=0, lease_ttl=30, recorder=UsageRecorder())


def authenticates(secret: str, auth: ForwardAuth | None = None) -> bool:
    """Whether forward-auth, the one check of a token, lets `secret` through now."""
    return (auth or forward_auth()).answer({"HTTP_AUTHORIZATION": f"Bearer {secret}"}).status == 200


PASSWORD = "correct horse battery staple"
HTMX = {"HTTP_HX_REQUEST": "true"}  # the test client's headers of an htmx request
HISTORY_RESTORE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}

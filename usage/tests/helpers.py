"""Helpers of the usage tests (fixtures stay in conftest.py)."""

from usage.forward_auth import Answer, ForwardAuth

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC: a fixed instant for the fake clock


class FakeClock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def call(auth: ForwardAuth, token: str | None, uri: str = "/v1/en/entities", **headers) -> Answer:
    environ = {"HTTP_X_FORWARDED_URI": uri, "HTTP_X_FORWARDED_METHOD": "POST", **headers}
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return auth.answer(environ)

"""The in-memory buffer of usage events, appended on the forward-auth path.

An event is a tuple (time, account, token, endpoint, method, status, request id):
appending it is one deque append, which never blocks and never fails.
"""

import collections


class UsageRecorder:
    def __init__(self):
        self._events = collections.deque()

    def record(self, event: tuple) -> None:
        self._events.append(event)

    def drain(self) -> list[tuple]:
        """Take every buffered event (oldest first)."""
        events = []
        while True:
            try:
                events.append(self._events.popleft())
            except IndexError:
                return events


recorder = UsageRecorder()

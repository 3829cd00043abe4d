"""The usage flusher as a process of its own, beside the forward-auth server (usage/server.py).

The server decides on one thread. A flusher thread beside it took the GIL and the core in
bursts (a second's calls formatted for COPY), and the decisions waiting behind it were
late by tens of ms at p99. So the server's recorder only buffers, and a shipper thread
hands the buffer every SHIP_SECONDS to a child process, `python -m usage.flusher`, over a
pipe: frames of a 4-byte length and a marshalled list of events (one C call each way).
The child records them in its own UsageRecorder, which writes them as in any process
(batches, backoff, journal, dead letters), at a lower priority (nice NICE) so that the
kernel runs a decision first.

The child ends at the end of its input, once it has written or journaled everything: when
the server stops (after a last shipment) or dies (losing what it had not shipped, at most
SHIP_SECONDS of calls). It ignores SIGTERM and SIGINT, which would cut that short. If the
child dies, the next shipment starts another; what the dead one held in memory (at most
USAGE_FLUSH_SECONDS of calls) is lost, as when any worker is killed.
"""

import contextlib
import fcntl
import logging
import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

SHIP_SECONDS = 0.1
FRAME_EVENTS = 2000  # marshalled in one C call, holding the GIL (about 0.7 ms)
NICE = 10
LENGTH = struct.Struct("!I")
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20  # a second's calls and more, so that a write rarely waits for the child


class FlusherProcess:
    """The server's end: ships the recorder's events to a child flusher from a thread of its own."""

    def __init__(self, recorder):
        self.recorder = recorder
        self._child: subprocess.Popen | None = None
        self._spawned = 0.0
        self._frame = b""  # a frame the child did not take, sent first
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._run, name="usage-shipper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ship what is left, then wait for the child to write it (or journal it)."""
        self._stopping.set()
        self._thread.join()
        self._child.stdin.close()
        self._child.wait()

    def _run(self) -> None:
        while not self._stopping.wait(SHIP_SECONDS):
            self.ship()
        self.ship()

    def ship(self) -> None:
        """Hand every waiting event to the child, a frame at a time; if it cannot take them, keep them for
        the next shipment (journaling those beyond USAGE_MEMORY_LIMIT), with one new child a second at most."""
        while self._frame or (events := self.recorder.take(FRAME_EVENTS)):
            self._frame = self._frame or marshal.dumps(events)
            try:
                if self._child.poll() is not None:
                    raise BrokenPipeError(f"exit status {self._child.returncode}")
                self._child.stdin.write(LENGTH.pack(len(self._frame)) + self._frame)
                self._child.stdin.flush()
            except (BrokenPipeError, ValueError) as error:  # ValueError: its pipe is closed
                log.error("Usage flusher process ended (%s)", error)
                if time.monotonic() - self._spawned > 1:
                    self._spawn()
                self.recorder.spill_excess()
                return
            self._frame = b""

    def _spawn(self) -> None:
        self._spawned = time.monotonic()
        self._child = subprocess.Popen([sys.executable, "-m", "usage.flusher"], stdin=subprocess.PIPE)
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: the default size works, with more waits
            fcntl.fcntl(self._child.stdin, F_SETPIPE_SZ, PIPE_SIZE)


def frames(stream):
    """The lists of events in the stream, until it ends."""
    while len(head := stream.read(LENGTH.size)) == LENGTH.size:
        (size,) = LENGTH.unpack(head)
        frame = stream.read(size)
        if len(frame) < size:
            log.error("Usage flusher: the server ended mid-shipment; %d bytes of events lost", len(frame))
            return
        yield marshal.loads(frame)


def main() -> None:
    """The child: events from standard input into this process's recorder, until the input ends."""
    for name in (signal.SIGTERM, signal.SIGINT):
        signal.signal(name, signal.SIG_IGN)
    os.nice(NICE)
    import django

    django.setup()
    from usage.recorder import recorder

    recorder.start()
    try:
        for events in frames(sys.stdin.buffer):
            recorder.record_many(events)
    finally:
        recorder.stop()


if __name__ == "__main__":
    main()

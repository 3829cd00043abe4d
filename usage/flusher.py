"""The usage flusher as a process of its own, beside the forward-auth server (usage/server.py).

The server decides on one thread. A flusher thread beside it took the GIL and the core in
bursts (a second's calls formatted for COPY), and the decisions waiting behind it were
late by tens of ms at p99. So the server's recorder only buffers, and a shipper thread
hands the buffer every SHIP_SECONDS to a child process, `python -m usage.flusher`, over a
pipe: frames of a 4-byte length and a marshalled list of events (one C call each way).
The child records them in its own UsageRecorder, which writes them as in any process
(batches, backoff, journal, dead letters), at a lower priority (nice NICE: about a tenth
of a shared core, its need at full load; SCHED_IDLE would starve it then, and only a
privileged process could lift it back).

The child ends at the end of its input, once it has written or journaled everything: when
the server stops (after a last shipment) or dies (losing what it had not shipped, at most
SHIP_SECONDS of calls). It ignores SIGTERM and SIGINT, which would cut that short. If the
child dies, the next shipment starts another; what the dead one held in memory (a flush
interval of calls, more while the database is slow) and in its pipe (up to PIPE_SIZE) is
lost, as when any worker is killed.
Memory is bounded on both sides: beyond USAGE_MEMORY_LIMIT, the child journals what it is
sent while its writes are slow, and the server what the child could not take (written by
the server itself when it stops).
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
from pathlib import Path

import django

from usage.recorder import recorder

log = logging.getLogger(__name__)

SHIP_SECONDS = 0.1
FRAME_EVENTS = 2000  # marshalled in one C call, holding the GIL (0.2-0.7 ms)
NICE = 10
LENGTH = struct.Struct("!I")
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20  # a second's calls and more, so that the pipe rarely fills
BASE_DIR = Path(__file__).resolve().parent.parent  # where `-m usage.flusher` is found


class FlusherProcess:
    """The server's end: ships the recorder's events to a child flusher from a thread of its own."""

    def __init__(self, recorder):
        self.recorder = recorder
        self._child: subprocess.Popen | None = None
        self._unsent = memoryview(b"")  # what the pipe has not taken yet of the last frame
        self._unsent_events: list[tuple] = []  # that frame's events
        self._spawned = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._run, name="usage-shipper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ship what is left and wait for the child to write it; what it could not take is written from here."""
        self._stopping.set()
        self._thread.join()
        with contextlib.suppress(BrokenPipeError):
            self._child.stdin.close()
        self._child.wait()
        self.recorder.stop()  # written, or journaled if the database is down

    def _run(self) -> None:
        while True:
            stopping = self._stopping.wait(SHIP_SECONDS)
            try:
                if stopping:  # the last shipment waits for the child to take it all
                    os.set_blocking(self._child.stdin.fileno(), True)
                self.ship()
            except Exception:  # never let the thread die: events would pile up unshipped
                log.exception("Usage: shipping to the flusher process failed")
            if stopping:
                return

    def ship(self) -> None:
        """Hand the waiting events to the child, a frame at a time, as far as its pipe takes them without
        waiting: those a child too slow to read leaves here are journaled beyond USAGE_MEMORY_LIMIT. If the
        child has ended, leave them waiting (journaled likewise) and start another, one a second at most."""
        try:
            if self._child.poll() is not None:
                raise BrokenPipeError(f"exit status {self._child.returncode}")
            while self._write_unsent() and (events := self.recorder.take(FRAME_EVENTS)):
                frame = marshal.dumps(events)
                self._unsent, self._unsent_events = memoryview(LENGTH.pack(len(frame)) + frame), events
        except OSError as error:  # the child has ended (BrokenPipeError), or its pipe is unusable
            self.recorder.give_back(self._unsent_events)  # the child keeps no part of a frame
            self._unsent, self._unsent_events = memoryview(b""), []
            if time.monotonic() - self._spawned > 1 and not self._stopping.is_set():
                log.error("Usage flusher process ended (%s); starting another", error)
                with contextlib.suppress(OSError):
                    self._child.stdin.close()
                self._spawn()
        finally:
            self.recorder.spill_excess()

    def _write_unsent(self) -> bool:
        """Write what the pipe takes of the last frame; True once all of it is written."""
        while self._unsent:
            try:
                written = os.write(self._child.stdin.fileno(), self._unsent)
            except BlockingIOError:
                return False
            self._unsent = self._unsent[written:]
        self._unsent_events = []
        return True

    def _spawn(self) -> None:
        self._spawned = time.monotonic()
        self._child = subprocess.Popen([sys.executable, "-m", "usage.flusher"], stdin=subprocess.PIPE, cwd=BASE_DIR)
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: the default size works, with more waits
            fcntl.fcntl(self._child.stdin, F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(self._child.stdin.fileno(), False)


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
    django.setup()
    recorder.start()
    try:
        for events in frames(sys.stdin.buffer):
            recorder.record_many(events)
    finally:
        recorder.stop()


if __name__ == "__main__":
    main()

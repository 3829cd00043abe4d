"""Local servers: a free port to start one on, waiting until it listens, running one (`make run`, tests, bench)."""

import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.output.complete() if isinstance(process, Server) else ""
            raise RuntimeError(f"{process.args[0]} exited: {output}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class Output:
    """All a process has printed, read by a thread as it comes: a pipe nobody reads fills up (64 KiB of
    log lines) and the process stalls on its next write, answering nothing."""

    def __init__(self, process: subprocess.Popen):
        self._lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self._lines.extend(process.stdout), daemon=True)
        self._reader.start()

    def __call__(self) -> str:
        return "".join(self._lines)

    def complete(self, seconds: float = 10) -> str:
        """Everything, once the process has closed its output (it has exited)."""
        self._reader.join(seconds)
        return self()


class Server(subprocess.Popen):
    """A process whose output (stdout and stderr) is read as it comes into `output`."""

    def __init__(self, args: list[str], **kwargs):
        super().__init__(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
        self.output = Output(self)


@contextmanager
def running(args: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None):
    """A process, once it listens on `port`; terminated at the end."""
    process = Server(args, env=env, cwd=cwd, start_new_session=True)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):  # hung while stopping
            process.wait(timeout=10)
        # Never leave it, or a child it left behind (a granian worker), holding ports and connections.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

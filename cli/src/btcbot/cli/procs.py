"""Child server processes: finding binaries, free ports, waiting for readiness, orderly stop.

Exceptions::

    InfraError                  infrastructure cannot be found, reached or started
    ├── MissingBinaryError      a server binary is not installed (the message says what to install)
    └── ServerStartError        a server process exited or did not become ready in time
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_POLL_INTERVAL = 0.02
_LOG_TAIL_BYTES = 2000


class InfraError(Exception):
    """Infrastructure (NATS, Redis, Postgres) cannot be found, reached or started."""


class MissingBinaryError(InfraError):
    """A server binary needed for an embedded server is not installed."""


class ServerStartError(InfraError):
    """A server process exited early or did not become ready in time."""


def find_executable(name: str, extra_dirs: Sequence[Path] = ()) -> Path | None:
    """Locate `name`: the venv's scripts dir (pinned wheels install there), then `extra_dirs`, then PATH."""
    candidates = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent, *extra_dirs]
    for directory in candidates:
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    return Path(found) if found else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a log file as text ('' if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def running_pid(pid_file: Path, process_name: str) -> int | None:
    """The pid in `pid_file` if that process is alive and named `process_name`, else None (a stale file).

    The name check keeps a recycled pid of an unrelated process from blocking a start.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return pid  # no procfs to tell: assume it is the server
    # The kernel truncates comm to 15 characters.
    return pid if comm == process_name[:15] else None


class EmbeddedServer:
    """A server process this program started; `stop()` ends it and is idempotent."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        url: str,
        log_path: Path,
        *,
        stop_signals: Sequence[signal.Signals] = (signal.SIGTERM,),
        monitor_url: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.log_path = log_path
        self.monitor_url = monitor_url
        self.data_dir = data_dir
        self._process = process
        self._stop_signals = tuple(stop_signals)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._process.pid

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Send each stop signal in turn, waiting up to `timeout` after each; SIGKILL as the last resort."""
        for sig in self._stop_signals:
            if not self.running:
                return
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
            return
        if self.running:
            self._process.kill()
            self._process.wait()

    def __repr__(self) -> str:
        return f"EmbeddedServer({self.name!r}, pid={self.pid}, url={self.url!r})"


def spawn(
    args: Sequence[str | Path],
    log_path: Path,
    *,
    user: int | None = None,
    group: int | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server with stdout/stderr appended to `log_path`.

    The child gets its own session so a Ctrl-C in the terminal reaches only our process, which then
    stops the servers after the services that use them.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 (arguments are built here, never from a shell string)
            [str(arg) for arg in args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            cwd=cwd,
        )


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    log_path: Path,
    timeout: float,
) -> None:
    """Poll `ready()` until true; raise ServerStartError if the process exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        code = process.poll()
        if code is not None:
            raise ServerStartError(
                f"{name} exited with code {code} during start-up; log {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise ServerStartError(f"{name} was not ready after {timeout:.0f} s; log {log_path}:\n{log_tail(log_path)}")
        time.sleep(_POLL_INTERVAL)

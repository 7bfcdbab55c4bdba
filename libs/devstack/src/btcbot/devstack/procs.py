"""Child processes of the development stack (one abstraction for servers and services), binaries, free ports.

Exceptions::

    InfraError                  infrastructure cannot be found, reached or started
    ├── MissingBinaryError      a server binary is not installed (the message says what to install)
    └── ServerStartError        a server process exited or did not become ready in time
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_POLL_INTERVAL = 0.02
_EXIT_POLL_INTERVAL = 0.1
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


class ManagedProcess:
    """One child process of the development stack, servers and services alike.

    `start()` appends its output to `log_path` and gives it its own session, so a Ctrl-C in the terminal reaches
    only our process, which then stops its children in order. `stop()` sends each stop signal in turn and SIGKILL
    as the last resort; `start()` while running and `stop()` after exit do nothing. A stopped process can be
    started again (the supervisor restarts services this way).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
        stop_signals: Sequence[signal.Signals] = (signal.SIGTERM,),
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signals = tuple(stop_signals)
        self.stop_timeout = stop_timeout
        self.starts = 0
        self._user = user
        self._group = group
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Spawn the process (a no-op while it runs); raises OSError when the program cannot be executed."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(  # noqa: S603 (arguments are built here, never from a shell string)
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                user=self._user,
                group=self._group,
                extra_groups=[] if self._user is not None else None,
                cwd=self.cwd,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        """The process id of the current (or last) start."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        """True while the process has been started and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last start (negative: killed by that signal); None while it runs or before it ran."""
        return None if self._popen is None else self._popen.poll()

    def send_signal(self, sig: int) -> None:
        """Signal the process if it still runs."""
        if self.running:
            assert self._popen is not None
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process if it still runs."""
        self.send_signal(signal.SIGKILL)

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready()` until true; if the process exits or `timeout` passes, kill it and raise ServerStartError."""
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            code = self.returncode
            if code is not None:
                tail = log_tail(self.log_path)
                raise ServerStartError(
                    f"{self.name} exited with code {code} during start-up; log {self.log_path}:\n{tail}"
                )
            if time.monotonic() > deadline:
                self.stop(timeout=0)
                tail = log_tail(self.log_path)
                raise ServerStartError(f"{self.name} was not ready after {timeout:.0f} s; log {self.log_path}:\n{tail}")
            time.sleep(_POLL_INTERVAL)

    async def wait(self) -> int:
        """Wait for the current start to exit without blocking the event loop; returns its exit code."""
        popen = self._popen
        if popen is None:
            raise RuntimeError(f"{self.name} was never started")
        if popen.poll() is None:
            await _exited(popen)
        return popen.wait()

    def stop(self, timeout: float | None = None) -> int | None:
        """Send each stop signal in turn, waiting up to `timeout` after each; SIGKILL as the last resort.

        Returns the exit code (None if it never ran). Blocks: from a coroutine use `astop`.
        """
        popen = self._popen
        if popen is None:
            return None
        wait = self.stop_timeout if timeout is None else timeout
        for sig in self.stop_signals:
            if popen.poll() is not None:
                return popen.returncode
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                return popen.wait(wait)
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
        return popen.wait()

    async def astop(self, timeout: float | None = None) -> int | None:
        """`stop` without blocking the event loop."""
        return await asyncio.to_thread(self.stop, timeout)

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen is not None else None
        return f"ManagedProcess({self.name!r}, pid={pid}, running={self.running})"


async def _exited(popen: subprocess.Popen[bytes]) -> None:
    """Return once `popen` has exited: a pidfd wakes the loop on Linux, polling elsewhere."""
    try:
        fd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux), or the pid is already gone
        while popen.poll() is None:  # noqa: ASYNC110 (no event to wait on: the kernel offers only polling here)
            await asyncio.sleep(_EXIT_POLL_INTERVAL)
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class EmbeddedServer:
    """A server this program started (NATS, Redis, Postgres) and where it answers; `stop()` is idempotent."""

    def __init__(
        self,
        process: ManagedProcess,
        url: str,
        *,
        monitor_url: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.process = process
        self.url = url
        self.monitor_url = monitor_url
        self.data_dir = data_dir

    @property
    def name(self) -> str:
        """The server program's name."""
        return self.process.name

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.process.log_path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.running

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (its stop signals, then SIGKILL); safe to call twice."""
        self.process.stop(timeout)

    def __repr__(self) -> str:
        return f"EmbeddedServer({self.name!r}, pid={self.pid}, url={self.url!r})"

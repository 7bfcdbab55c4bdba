"""Child processes of `btcbot up`: the simulator and the services, each with its own log and health port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from btcbot.cli.procs import free_port, log_tail


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_port: int = 0
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    expected_exit: bool = False
    _log: object = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Starts children, restarts a crashed one (a few times), stops them in a given order."""

    def __init__(self, log_dir: Path, max_restarts: int = 3) -> None:
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}
        self.max_restarts = max_restarts
        self.events: list[str] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._closing = False

    def add(
        self, name: str, module: str, env: dict[str, str], args: list[str] | None = None, health: bool = True
    ) -> Child:
        """Declare a child `python -m module args` with extra env (and a free health port)."""
        port = free_port() if health else 0
        full_env = {**os.environ, **env}
        if health:
            full_env["BTCBOT_HEALTH_PORT"] = str(port)
            full_env.setdefault("BTCBOT_INSTANCE", f"{name}-1")
        child = Child(name, [sys.executable, "-m", module, *(args or [])], full_env, self.log_dir / f"{name}.log", port)
        self.children[name] = child
        return child

    async def start(self, name: str) -> Child:
        """Spawn a declared child with its output appended to its log."""
        child = self.children[name]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = child.log_path.open("ab")
        child.process = await asyncio.create_subprocess_exec(
            *child.argv, env=child.env, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
        )
        log.close()
        self._watchers.append(asyncio.create_task(self._watch(child)))
        return child

    async def _watch(self, child: Child) -> None:
        process = child.process
        assert process is not None
        code = await process.wait()
        if self._closing or child.expected_exit or child.process is not process:
            return
        self.events.append(f"{child.name} exited with {code}")
        print(
            f"!! {child.name} exited with code {code}; last log lines:\n{log_tail(child.log_path, 1500)}",
            file=sys.stderr,
        )
        if child.restarts < self.max_restarts:
            child.restarts += 1
            await asyncio.sleep(1.0)
            if not self._closing:
                print(f".. restarting {child.name} ({child.restarts}/{self.max_restarts})", file=sys.stderr)
                await self.start(child.name)

    async def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the child's /readyz answers 200; raise RuntimeError with its log tail if it dies or times out."""
        child = self.children[name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no answer"
        while loop.time() < deadline:
            if not child.running:
                raise RuntimeError(f"{name} exited during start-up:\n{log_tail(child.log_path, 3000)}")
            status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{child.health_port}/readyz")
            if status == 200:
                return
            last = f"{status} {body}"
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s ({last}):\n{log_tail(child.log_path, 3000)}")

    async def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM a child and wait; SIGKILL after timeout. Returns its exit code."""
        child = self.children.get(name)
        if child is None or child.process is None:
            return None
        child.expected_exit = True
        process = child.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                self.events.append(f"{name} did not stop within {timeout:.0f}s; killed")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        return process.returncode

    async def close(self) -> None:
        """Stop every child still running, newest first."""
        self._closing = True
        for name in reversed(list(self.children)):
            await self.stop(name)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310  (a local health URL we built)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return 0, str(exc)


def readiness(port: int) -> dict[str, object]:
    """The /readyz body of a child (for diagnostics)."""
    status, body = _get(f"http://127.0.0.1:{port}/readyz")
    try:
        parsed: dict[str, object] = json.loads(body)
    except ValueError:
        parsed = {"raw": body}
    parsed["status"] = status
    return parsed

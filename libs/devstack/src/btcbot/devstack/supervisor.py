"""Child processes of `btcbot up`: the simulator and the services, each with its own log and health port.

A child that exits when nobody asked it to is started again under the restart policy (btcbot.devstack.restarts):
exponential backoff, and a budget of restarts per time window. A child that spends its budget stays down: the
supervisor says so on stderr, records it in `failed`, and sets `failure`, which `btcbot up` waits on to stop the
run and exit with EXIT_SERVICE_DOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btcbot.devstack.procs import ManagedProcess, free_port, log_tail
from btcbot.devstack.restarts import GiveUp, RestartBudget, RestartPolicy

# `btcbot up`'s exit code when a service stayed down (1 is a failed start, 2 a user's mistake).
EXIT_SERVICE_DOWN = 3
_CRASH_LOG = 1500  # bytes of a crashed child's log shown on stderr


@dataclass
class Child:
    """One supervised process and its restart history."""

    name: str
    process: ManagedProcess
    budget: RestartBudget
    health_port: int = 0
    restarts: int = 0
    expected_exit: bool = False

    @property
    def log_path(self) -> Path:
        """Where the child's output goes (all its lives)."""
        return self.process.log_path

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.process.running


class Supervisor:
    """Starts children, restarts a crashed one under a RestartPolicy, stops them in a given order."""

    def __init__(self, log_dir: Path, policy: RestartPolicy | None = None, stop_timeout: float = 15.0) -> None:
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.stop_timeout = stop_timeout
        self.children: dict[str, Child] = {}
        self.events: list[str] = []
        # name -> why it stayed down; `failure` is set with the first entry.
        self.failed: dict[str, str] = {}
        self.failure = asyncio.Event()
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
        argv = [sys.executable, "-m", module, *(args or [])]
        process = ManagedProcess(name, argv, self.log_dir / f"{name}.log", env=full_env, stop_timeout=self.stop_timeout)
        child = Child(name, process, RestartBudget(self.policy), port)
        self.children[name] = child
        return child

    async def start(self, name: str) -> Child:
        """Spawn a declared child with its output appended to its log, and watch it."""
        child = self.children[name]
        child.process.start()
        self._watchers.append(asyncio.create_task(self._watch(child, child.process.starts)))
        return child

    async def _watch(self, child: Child, generation: int) -> None:
        how = _exit_text(await child.process.wait())
        while not (self._closing or child.expected_exit or child.process.starts != generation):
            self._note(f"{child.name} {how}")
            _say(f"!! {child.name} {how}; last log lines:\n{log_tail(child.log_path, _CRASH_LOG)}")
            decision = child.budget.crashed(time.monotonic())
            if isinstance(decision, GiveUp):
                self._give_up(child, decision)
                return
            _say(
                f".. restarting {child.name} in {decision.delay:g} s "
                f"(restart {decision.attempt} of {self.policy.max_restarts} allowed in {self.policy.window:g} s)"
            )
            await asyncio.sleep(decision.delay)
            if self._closing or child.expected_exit or child.process.starts != generation:
                return
            try:
                child.process.start()
            except OSError as exc:  # the program itself cannot run: that is a crash too
                how = f"could not start ({exc})"
                continue
            child.restarts += 1
            generation = child.process.starts
            how = _exit_text(await child.process.wait())

    def _give_up(self, child: Child, decision: GiveUp) -> None:
        line = decision.describe(child.name, str(child.log_path))
        self._note(line)
        self.failed[child.name] = line
        _say(f"!! {line}")
        self.failure.set()

    def _note(self, event: str) -> None:
        self.events.append(event)

    async def wait_for_stop(self, stop: asyncio.Event, timeout: float | None) -> None:
        """Return when `stop` is set, a service stayed down, or `timeout` seconds (None: no limit) passed."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.failure.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def verdict(self) -> dict[str, Any]:
        """The summary's verdict: `{"ok": true, "failed_services": []}` unless a service stayed down."""
        return {"ok": not self.failed, "failed_services": sorted(self.failed)}

    def exit_code(self) -> int:
        """0, or EXIT_SERVICE_DOWN when a service stayed down."""
        return EXIT_SERVICE_DOWN if self.failed else 0

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

    async def stop(self, name: str, timeout: float | None = None) -> int | None:
        """Stop a child on purpose (SIGTERM, SIGKILL after the timeout); returns its exit code."""
        child = self.children.get(name)
        if child is None:
            return None
        child.expected_exit = True
        code = await child.process.astop(timeout)
        if code == -signal.SIGKILL and signal.SIGKILL not in child.process.stop_signals:
            self._note(f"{name} did not stop within {timeout or child.process.stop_timeout:.0f}s; killed")
        return code

    async def close(self) -> None:
        """Stop every child still running, newest first; safe to call twice."""
        self._closing = True
        for name in reversed(list(self.children)):
            await self.stop(name)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers.clear()


def _exit_text(code: int) -> str:
    """`exited with code 1`, or `was killed by SIGKILL` for a negative (signal) exit code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _say(text: str) -> None:
    """A line for the operator on stderr (stdout is `btcbot up`'s JSON summary)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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

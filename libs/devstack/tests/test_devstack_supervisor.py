"""The supervisor on real child processes: a killed child comes back, a crash loop spends the budget and is
reported, a child stopped on purpose stays stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from btcbot.devstack.procs import ManagedProcess
from btcbot.devstack.restarts import RestartPolicy
from btcbot.devstack.supervisor import EXIT_SERVICE_DOWN, Supervisor

# An idle child from the standard library: an HTTP server on a port the kernel picks.
IDLE = ("http.server", ["--bind", "127.0.0.1", "0"])
FAST = RestartPolicy(delay=0.05, max_delay=0.2, max_restarts=2, window=60)


async def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_killed_child_is_restarted_and_the_run_stays_ok(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, FAST)
    sup.add("idle", IDLE[0], {}, IDLE[1], health=False)
    try:
        child = await sup.start("idle")
        first = child.process.pid
        os.kill(first, signal.SIGKILL)
        await _until(lambda: child.restarts == 1 and child.running, 10, "the restart")
        assert child.process.pid != first
        assert sup.events == ["idle was killed by SIGKILL"]
        assert sup.verdict() == {"ok": True, "failed_services": []}
        assert sup.exit_code() == 0
    finally:
        await sup.close()
    assert not child.running


async def test_a_crash_loop_spends_the_budget_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sup = Supervisor(tmp_path, FAST)
    # `python -m` of a module that does not exist exits 1 at once, every time: a crash loop.
    sup.add("execution", "btcbot_no_such_module", {}, health=False)
    try:
        await sup.start("execution")
        await asyncio.wait_for(sup.wait_for_stop(asyncio.Event(), None), 10)
    finally:
        await sup.close()
    log = tmp_path / "execution.log"
    assert sup.failed == {"execution": f"execution stayed down: 3 crashes in 60 s; see {log}"}
    assert sup.children["execution"].restarts == 2
    assert sup.verdict() == {"ok": False, "failed_services": ["execution"]}
    assert sup.exit_code() == EXIT_SERVICE_DOWN
    err = capsys.readouterr().err
    assert f"!! execution stayed down: 3 crashes in 60 s; see {log}" in err
    assert "No module named btcbot_no_such_module" in err  # the crash shows the log's tail


async def test_a_child_stopped_on_purpose_is_not_restarted(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, FAST)
    sup.add("idle", IDLE[0], {}, IDLE[1], health=False)
    try:
        child = await sup.start("idle")
        assert await sup.stop("idle") == -signal.SIGTERM
        await asyncio.sleep(0.3)  # more than the backoff: a restart would have happened by now
        assert not child.running
        assert child.restarts == 0
        assert sup.events == []
    finally:
        await sup.close()


async def test_wait_for_stop_returns_on_the_stop_event_or_the_timeout(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, FAST)
    started = time.monotonic()
    await sup.wait_for_stop(asyncio.Event(), 0.1)
    assert time.monotonic() - started < 2
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await asyncio.wait_for(sup.wait_for_stop(stop, None), 5)
    assert sup.verdict()["ok"]


async def test_managed_process_wait_is_woken_by_the_exit_and_start_is_idempotent(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(0.3)"], tmp_path / "p.log")
    assert process.returncode is None
    assert process.stop() is None  # never started: nothing to do
    process.start()
    pid = process.pid
    assert process.start().pid == pid  # a second start while it runs does nothing
    assert await asyncio.wait_for(process.wait(), 10) == 0
    assert process.stop() == 0  # already gone: stop only reports the code
    process.start()
    assert process.pid != pid
    assert process.starts == 2
    assert process.stop(timeout=5) == -signal.SIGTERM

"""The loop around a poll: pace it, survive the failures we expect, back off while they last.

Only the errors listed as expected (exchange and bus outages) are retried here; anything else is a bug
and ends the task, which stops the service so the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from btcbot.runtime.backoff import Backoff


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less if `stop` is set."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def poll_forever(
    stop: asyncio.Event,
    step: Callable[[], Awaitable[object]],
    *,
    interval: float,
    backoff: Backoff,
    expected: tuple[type[BaseException], ...],
    log: Any,
    what: str,
) -> None:
    """Run `step` every `interval` seconds until `stop`; expected errors are logged and retried."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        try:
            await step()
        except expected as exc:
            delay = backoff.failure()
            log.warning(
                "poll.failed",
                poll=what,
                error_class=type(exc).__name__,
                error=str(exc),
                failures=backoff.failures,
                retry_in=round(delay, 3),
            )
            await sleep_or_stop(stop, delay)
            continue
        if backoff.failures:
            log.info("poll.recovered", poll=what, failures=backoff.failures)
        backoff.success()
        await sleep_or_stop(stop, interval - (loop.time() - started))

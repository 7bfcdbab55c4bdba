"""Keep a service's exchange rules fresh: read exchangeinfo now and every few minutes, back off on failure.

One loop for execution, risk and strategy (each holds a `btcbot.btcturk.rulebook.RulesHolder`). A failed
reload keeps the old rules; with none loaded yet, the services decide nothing that needs them (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from btcbot.runtime.backoff import Backoff


class Loadable(Protocol):
    """What the loop fills: `load` takes exchangeinfo's symbols and returns how many there are."""

    @property
    def loaded(self) -> bool:
        """True once a load succeeded."""
        ...

    def load(self, symbols: Iterable[Any]) -> int:
        """Replace the rules."""
        ...


async def keep_rules(
    stop: asyncio.Event,
    fetch: Callable[[], Awaitable[Iterable[Any]]],
    holder: Loadable,
    log: Any,
    *,
    service: str,
    every: float,
    retry_max: float = 60.0,
    errors: tuple[type[BaseException], ...] = (Exception,),
    rng: random.Random | None = None,
    on_load: Callable[[], None] | None = None,
) -> None:
    """Load now (or after `every` when `holder` is loaded already) and every `every` seconds until `stop`.

    `fetch` returns exchangeinfo's symbols; `errors` are the failures that mean "try again later" (anything
    else is a bug and ends the task). `on_load` runs after each successful load.
    """
    failed, loaded = f"{service}.rules_failed", f"{service}.rules_loaded"  # structlog event names
    backoff = Backoff(1.0, max(1.0, retry_max), rng or random.Random())
    if holder.loaded:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    while not stop.is_set():
        try:
            count = holder.load(await fetch())
        except errors as exc:
            delay = backoff.failure()
            log.warning(failed, error_class=type(exc).__name__, error=str(exc),
                        failures=backoff.failures, retry_in=round(delay, 3), rules=holder.loaded)  # fmt: skip
        else:
            backoff.success()
            delay = every
            if on_load is not None:
                on_load()
            log.info(loaded, symbols=count)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

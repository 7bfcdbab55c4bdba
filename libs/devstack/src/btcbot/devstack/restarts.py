"""The supervisor's restart policy: exponential backoff, and a budget of restarts per time window.

Pure: the caller passes the clock's reading in, so the policy is tested without sleeping.

Settings (read by `btcbot up`, docs/operations.md "Supervisor"):

    BTCBOT_RESTART_DELAY       first backoff in seconds (0.5); doubles after each crash within the window
    BTCBOT_RESTART_MAX_DELAY   the longest backoff in seconds (10)
    BTCBOT_RESTART_MAX         restarts allowed within the window (5); the next crash there gives up
    BTCBOT_RESTART_WINDOW      the window in seconds (120)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_DELAY = "BTCBOT_RESTART_DELAY"
ENV_MAX_DELAY = "BTCBOT_RESTART_MAX_DELAY"
ENV_MAX = "BTCBOT_RESTART_MAX"
ENV_WINDOW = "BTCBOT_RESTART_WINDOW"


class RestartSettingError(ValueError):
    """A BTCBOT_RESTART_* variable holds a value the policy cannot use (the message names it)."""


@dataclass(frozen=True)
class RestartPolicy:
    """How soon and how often a crashed service is started again."""

    delay: float = 0.5
    max_delay: float = 10.0
    max_restarts: int = 5
    window: float = 120.0

    def __post_init__(self) -> None:
        checks = (
            (ENV_DELAY, self.delay, self.delay >= 0),
            (ENV_MAX_DELAY, self.max_delay, self.max_delay >= self.delay),
            (ENV_MAX, self.max_restarts, self.max_restarts >= 0),
            (ENV_WINDOW, self.window, self.window > 0),
        )
        for name, value, ok in checks:
            if not ok or not math.isfinite(value):
                raise RestartSettingError(f"{name}={value}: {_RULES[name]}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RestartPolicy:
        """The policy of BTCBOT_RESTART_* (defaults for unset ones); RestartSettingError names a bad one."""
        defaults = cls()
        return cls(
            delay=_number(env, ENV_DELAY, defaults.delay),
            max_delay=_number(env, ENV_MAX_DELAY, defaults.max_delay),
            max_restarts=int(_number(env, ENV_MAX, defaults.max_restarts, integer=True)),
            window=_number(env, ENV_WINDOW, defaults.window),
        )

    def describe(self) -> str:
        """One line for the operator, e.g. `at most 5 restarts in 120 s, backoff 0.5 s doubling to 10 s`."""
        return (
            f"at most {self.max_restarts} restarts in {self.window:g} s, "
            f"backoff {self.delay:g} s doubling to {self.max_delay:g} s"
        )


_RULES = {
    ENV_DELAY: "seconds, 0 or more",
    ENV_MAX_DELAY: f"seconds, at least {ENV_DELAY}",
    ENV_MAX: "a whole number of restarts, 0 or more",
    ENV_WINDOW: "seconds, more than 0",
}


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return int(raw) if integer else float(raw)
    except ValueError:
        raise RestartSettingError(f"{name}={raw!r}: {_RULES[name]}") from None


@dataclass(frozen=True)
class Restart:
    """Start the service again after `delay` seconds (this is restart number `attempt` within the window)."""

    delay: float
    attempt: int


@dataclass(frozen=True)
class GiveUp:
    """The budget is spent: `crashes` crashes within the last `window` seconds."""

    crashes: int
    window: float

    def describe(self, name: str, log: str) -> str:
        """The operator's line: `execution stayed down: 6 crashes in 120 s; see <log>`."""
        return f"{name} stayed down: {self.crashes} crashes in {self.window:g} s; see {log}"


@dataclass
class RestartBudget:
    """The crash history of one service under a policy."""

    policy: RestartPolicy
    _crashes: deque[float] = field(default_factory=deque)

    def crashed(self, now: float) -> Restart | GiveUp:
        """Record a crash at `now` (monotonic seconds) and decide what follows."""
        self._crashes.append(now)
        while self._crashes and self._crashes[0] <= now - self.policy.window:
            self._crashes.popleft()
        crashes = len(self._crashes)
        if crashes > self.policy.max_restarts:
            return GiveUp(crashes, self.policy.window)
        delay = min(self.policy.max_delay, self.policy.delay * 2 ** (crashes - 1))
        return Restart(delay, crashes)

"""The restart policy: backoff doubling to a ceiling, a budget per sliding window, settings read with clear errors."""

from __future__ import annotations

import pytest

from btcbot.devstack.restarts import GiveUp, Restart, RestartBudget, RestartPolicy, RestartSettingError


def test_backoff_doubles_to_the_ceiling_then_the_budget_runs_out() -> None:
    budget = RestartBudget(RestartPolicy(delay=0.5, max_delay=3.0, max_restarts=5, window=120))
    decisions = [budget.crashed(float(t)) for t in range(6)]
    assert decisions[:5] == [Restart(0.5, 1), Restart(1.0, 2), Restart(2.0, 3), Restart(3.0, 4), Restart(3.0, 5)]
    gave_up = decisions[5]
    assert gave_up == GiveUp(6, 120)
    assert isinstance(gave_up, GiveUp)
    assert gave_up.describe("execution", "/x/execution.log") == (
        "execution stayed down: 6 crashes in 120 s; see /x/execution.log"
    )


def test_crashes_older_than_the_window_no_longer_count() -> None:
    budget = RestartBudget(RestartPolicy(delay=1, max_delay=10, max_restarts=2, window=60))
    assert budget.crashed(0) == Restart(1, 1)
    assert budget.crashed(30) == Restart(2, 2)
    # The crash at 0 left the window: two in the last 60 s, still within the budget, and the backoff relaxes.
    assert budget.crashed(61) == Restart(2, 2)
    assert budget.crashed(62) == GiveUp(3, 60)


def test_a_budget_of_zero_gives_up_at_the_first_crash() -> None:
    assert RestartBudget(RestartPolicy(max_restarts=0)).crashed(5.0) == GiveUp(1, 120)


def test_policy_from_env_defaults_and_overrides() -> None:
    assert RestartPolicy.from_env({}) == RestartPolicy(0.5, 10.0, 5, 120.0)
    env = {
        "BTCBOT_RESTART_DELAY": "0.2",
        "BTCBOT_RESTART_MAX_DELAY": "4",
        "BTCBOT_RESTART_MAX": "3",
        "BTCBOT_RESTART_WINDOW": "30",
    }
    assert RestartPolicy.from_env(env) == RestartPolicy(0.2, 4.0, 3, 30.0)
    assert RestartPolicy.from_env(env).describe() == "at most 3 restarts in 30 s, backoff 0.2 s doubling to 4 s"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BTCBOT_RESTART_MAX": "five"}, "BTCBOT_RESTART_MAX='five'"),
        ({"BTCBOT_RESTART_MAX": "2.5"}, "BTCBOT_RESTART_MAX='2.5'"),
        ({"BTCBOT_RESTART_MAX": "-1"}, "BTCBOT_RESTART_MAX=-1"),
        ({"BTCBOT_RESTART_DELAY": "-1"}, "BTCBOT_RESTART_DELAY=-1.0"),
        ({"BTCBOT_RESTART_DELAY": "nan"}, "BTCBOT_RESTART_DELAY=nan"),
        ({"BTCBOT_RESTART_WINDOW": "0"}, "BTCBOT_RESTART_WINDOW=0.0"),
        ({"BTCBOT_RESTART_DELAY": "5", "BTCBOT_RESTART_MAX_DELAY": "1"}, "BTCBOT_RESTART_MAX_DELAY=1.0"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(RestartSettingError) as caught:
        RestartPolicy.from_env(env)
    message = str(caught.value)
    assert message.startswith(named + ":")
    assert "\n" not in message

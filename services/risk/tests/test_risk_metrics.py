"""Risk's effective mode for /metrics: the stricter of the operator's and the automatic one."""

from __future__ import annotations

import pytest

from btcbot.risk.metrics import effective_mode


@pytest.mark.parametrize(
    ("manual", "auto", "effective"),
    [
        ("NORMAL", "NORMAL", "NORMAL"),
        ("NORMAL", "REDUCE_ONLY", "REDUCE_ONLY"),
        ("REDUCE_ONLY", "NORMAL", "REDUCE_ONLY"),
        ("OBSERVE_ONLY", "REDUCE_ONLY", "OBSERVE_ONLY"),
        ("REDUCE_ONLY", "OBSERVE_ONLY", "OBSERVE_ONLY"),
    ],
)
def test_the_stricter_mode_is_in_force(manual: str, auto: str, effective: str) -> None:
    assert effective_mode(manual, auto) == effective  # type: ignore[arg-type]

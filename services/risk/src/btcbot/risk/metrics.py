"""Risk's figures for /metrics: the kill switch, the modes (effective, manual, automatic) and active alarms."""

from __future__ import annotations

from btcbot.contracts.messages import Mode
from btcbot.risk.control import RiskState
from btcbot.runtime.metrics import instruments, set_mode

_RANK: dict[str, int] = {"NORMAL": 0, "REDUCE_ONLY": 1, "OBSERVE_ONLY": 2}


def effective_mode(manual: Mode, auto: Mode) -> Mode:
    """The stricter of the operator's mode and the automatic one (what the checks enforce)."""
    return manual if _RANK[manual] >= _RANK[auto] else auto


def report_control(state: RiskState) -> None:
    """Set the control gauges from risk's state (cheap; called on a short period)."""
    inst = instruments()
    inst.kill_switch.set(1 if state.kill_engaged else 0)
    set_mode(effective_mode(state.mode, state.auto.mode), "effective")
    set_mode(state.mode, "manual")
    set_mode(state.auto.mode, "auto")
    for alarm in state.alarms.values():
        inst.alarm_active.set(1 if alarm.active else 0, {"source": alarm.source, "kind": alarm.kind})

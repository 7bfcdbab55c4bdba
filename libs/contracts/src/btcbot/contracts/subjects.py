"""Every subject of the system, built here and nowhere else.

The symbol is always the last token (`md.book.BTCTRY`) so consumers can filter per symbol.
"""

from __future__ import annotations

import re

_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")

EXEC_KINDS = ("accepted", "rejected", "canceled", "filled")

CONTROL_MODE = "control.mode"
CONTROL_KILL = "control.kill"
# The automatic mode risk's budget sets (ModeChanged, source "auto"); the stricter of it and control.mode wins.
CONTROL_AUTO = "control.auto"
CONTROL_ALARMS = "control.alarm.>"
CONTROL_RESUMES = "control.resume.*"
# The dynamic universe's selections (UniverseSelected): one subject, its history in the UNIVERSE stream.
UNIVERSE_SELECTED = "universe.selected"


def _symbol(symbol: str) -> str:
    if not _SYMBOL.match(symbol):
        raise ValueError(f"not a symbol token: {symbol!r} (expected upper-case letters and digits, e.g. BTCTRY)")
    return symbol


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"not a subject token: {value!r}")
    return value


def book(symbol: str) -> str:
    """Order book snapshots of a symbol."""
    return f"md.book.{_symbol(symbol)}"


def trade(symbol: str) -> str:
    """Public trades of a symbol."""
    return f"md.trade.{_symbol(symbol)}"


def intent(symbol: str) -> str:
    """Order intents from strategies."""
    return f"intent.{_symbol(symbol)}"


def submit(symbol: str) -> str:
    """SubmitOrder commands from risk to execution."""
    return f"order.submit.{_symbol(symbol)}"


def cancel(symbol: str) -> str:
    """CancelOrder commands to execution."""
    return f"order.cancel.{_symbol(symbol)}"


def denied(symbol: str) -> str:
    """OrderDenied events from risk."""
    return f"order.denied.{_symbol(symbol)}"


def execution(kind: str, symbol: str) -> str:
    """Execution events (accepted, rejected, canceled, filled) of a symbol."""
    if kind not in EXEC_KINDS:
        raise ValueError(f"unknown execution event kind {kind!r}; one of {EXEC_KINDS}")
    return f"exec.{kind}.{_symbol(symbol)}"


def executions(kind: str) -> str:
    """Execution events of one kind for every symbol (a filter: `exec.rejected.*`)."""
    return execution(kind, "BTCTRY").rsplit(".", 1)[0] + ".*"


def portfolio(account: str) -> str:
    """The latest PortfolioSnapshot of an account."""
    return f"portfolio.{_token(account)}"


PORTFOLIOS = "portfolio.*"


def alarm(source: str, kind: str) -> str:
    """Where a service raises or clears one kind of alarm (the last message per subject holds)."""
    return f"control.alarm.{_token(source)}.{_token(kind)}"


def resume(symbol: str) -> str:
    """Operator commands clearing a symbol's integrity halt."""
    return f"control.resume.{_symbol(symbol)}"


def dead_letter(service: str, original_subject: str) -> str:
    """Where a service parks a message it could not process."""
    return f"dlq.{_token(service)}.{original_subject}"

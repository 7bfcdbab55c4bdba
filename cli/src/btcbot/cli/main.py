"""The `btcbot` command: run the whole system, one part of it, or check its dependencies."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from btcbot.runtime.redact import redact, register_env

SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="btcbot", description="BTCTurk trading system")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the simulator and the five services on this machine")
    up.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    up.add_argument("--state-dir", type=Path, default=Path(".state/up"), help="logs, traces and embedded servers")
    up.add_argument("--symbols", default="BTCTRY,ETHTRY", help="comma-separated pair symbols")
    up.add_argument("--seed", type=int, default=7, help="the simulated market's random seed")
    up.add_argument("--keep-state", action="store_true", help="keep embedded servers' data and the ledger")

    sim = sub.add_parser("sim", help="the BTCTurk simulator alone (options: btcbot sim -- --help)", add_help=False)
    sim.add_argument("args", nargs=argparse.REMAINDER)

    service = sub.add_parser("service", help="run one service in the foreground")
    service.add_argument("name", choices=SERVICES)

    sub.add_parser("doctor", help="check NATS, Redis, Postgres, the streams and the exchange")
    _add_canary(sub)
    natscfg = sub.add_parser(
        "nats-config", help="render the NATS server config and per-identity credentials (compose, Kubernetes)"
    )
    natscfg.add_argument("--out", type=Path, required=True, help="directory to write into (files are 0600)")
    natscfg.add_argument("--target", choices=("embedded", "compose", "k8s", "all"), default="all")
    natscfg.add_argument("--namespace", default="btcbot", help="Kubernetes namespace of the Secrets")
    natscfg.add_argument("--store-dir", help="JetStream store directory in the server config")
    sub.add_parser("migrate", help="apply the ledger's database migrations (DATABASE_URL)")

    report = sub.add_parser("report", help="positions, PnL, equity and drawdown from the ledger (DATABASE_URL)")
    report.add_argument("--json", action="store_true", help="one JSON object")
    report.add_argument("--csv", action="store_true", help="long-form CSV: section,item,field,value")
    report.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the equity curve and drawdown")
    report.add_argument("--exchange", action="store_true", help="compare balances with the exchange (BTCTURK_*)")
    report.add_argument("--run-file", type=Path, help="run.json of `btcbot up`: its database and simulator")

    verify = sub.add_parser("verify", help="compare the simulator's record with execution's and the ledger's")
    verify.add_argument("--run-file", help="run.json written by `btcbot up` (e.g. .state/up/run.json)")
    for flag in ("sim-url", "api-key", "nats-url", "database-url", "redis-url", "key-prefix", "account"):
        verify.add_argument(f"--{flag}", help="overrides the run file and the environment")
    verify.add_argument("--since-ms", type=int, help="ignore stream messages older than this (epoch ms)")

    control = sub.add_parser(
        "control", help="set the trading mode or the kill switch, resume a halted symbol, or show the control state"
    )
    control.add_argument("action", choices=("mode", "kill", "release", "resume", "status"))
    control.add_argument(
        "mode", nargs="?", default="", help="NORMAL | REDUCE_ONLY | OBSERVE_ONLY (with `mode`); SYMBOL (with `resume`)"
    )
    control.add_argument("--reason", help="why; recorded with the event (required except for `status`)")
    control.add_argument("--operator", help="who (default: login name)")
    control.add_argument(
        "--cancel-resting", action="store_true", help="with `kill`: also cancel every resting order (default: keep)"
    )

    ledger = sub.add_parser("ledger", help="operator commands of the ledger (DATABASE_URL)")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    quarantine = ledger_sub.add_parser("quarantine", help="fills held for orders the ledger does not know")
    quarantine.add_argument("--adopt", type=int, metavar="ID", help="book this held fill as it is")
    quarantine.add_argument("--all", action="store_true", help="also list the fills already released")
    quarantine.add_argument("--operator", help="who adopts (default: login name)")

    sub.add_parser("alert-relay", help="relay Alertmanager's webhook to Telegram and generic JSON URLs (ALERT_RELAY_*)")
    dlq = sub.add_parser("dlq", help="the newest dead letters, one JSON object per line")
    dlq.add_argument("--service", help="only this service's dead letters")
    dlq.add_argument("--limit", type=int, default=20)
    _add_replay(sub)
    return parser


def _add_canary(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    canary = sub.add_parser("canary", help="doctor, then one capped order end to end through risk, execution, ledger")
    canary.add_argument("--symbol", required=True, help="pair symbol such as BTCTRY")
    canary.add_argument("--notional", required=True, help="order value in the quote asset (<= CANARY_MAX_NOTIONAL)")
    canary.add_argument("--side", choices=("buy", "sell"), default="buy")
    canary.add_argument("--ttl", type=float, default=30.0, help="seconds to wait for the fill before canceling")
    canary.add_argument("--run-file", type=Path, help="run.json of `btcbot up`: its servers, simulator, identities")


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser("replay", help="re-run strategy and risk over a recorded range and diff the decisions")
    replay.add_argument("--from-seq", type=int, default=1, help="first MARKET sequence (default: the first)")
    replay.add_argument("--to-seq", type=int, help="last MARKET sequence")
    replay.add_argument("--since", help="books received at or after this ISO time (UTC if no offset)")
    replay.add_argument("--until", help="books received at or before this ISO time")
    replay.add_argument("--symbols", help="comma-separated symbols (default BTCBOT_SYMBOLS)")
    replay.add_argument("--params", action="append", help="strategy overrides NAME=VALUE[,...] (ProfitParams names)")
    replay.add_argument("--rules", type=Path, help="saved exchangeinfo JSON for the exchange rule checks")
    replay.add_argument("--rules-from-exchange", metavar="URL", help="load exchange rules from this REST base URL")
    replay.add_argument("--assume-flat", action="store_true", help="start flat if no portfolio precedes the range")
    replay.add_argument("--publish-prefix", metavar="PFX", help="also publish books and intents under PFX.>")
    replay.add_argument("--speed", type=float, default=0.0, help="pace publishing: 1 = recorded pace, 0 = at once")
    replay.add_argument("--nats-url", help="default NATS_URL")
    replay.add_argument("--json", action="store_true", help="one JSON object per intent instead of a table")


def _quiet_logs() -> None:
    """The kit logs through structlog; in the CLI only warnings matter, and stdout belongs to results."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


class RedactingStream(io.TextIOBase):
    """stdout/stderr of the CLI: every write passes through the kit's `redact` (results, errors, tracebacks)."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        """Write the redacted text; returns the length written as the caller sees it."""
        self._inner.write(redact(text))
        return len(text)

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self._inner.flush()

    def isatty(self) -> bool:
        """Whether the wrapped stream is a terminal."""
        return self._inner.isatty()

    def fileno(self) -> int:
        """The wrapped stream's descriptor (children started with it write unredacted: they redact themselves)."""
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The wrapped stream's encoding."""
        return self._inner.encoding


def redact_output(environ: Mapping[str, str]) -> None:
    """Register the secrets this process was given and redact everything it prints from now on."""
    register_env(environ)
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)


def _canary(args: argparse.Namespace) -> int:
    """`btcbot canary`: parse the numbers, merge the run file, run the steps."""
    from decimal import Decimal, InvalidOperation

    from btcbot.cli.canary_run import CanaryOptions, env_from_run_file, run_canary

    try:
        notional = Decimal(args.notional)
    except InvalidOperation:
        print(f"btcbot canary: --notional must be a number, not {args.notional!r}")
        return 2
    if args.ttl <= 0:
        print("btcbot canary: --ttl must be positive")
        return 2
    env = env_from_run_file(os.environ, args.run_file)
    register_env(env)
    copts = CanaryOptions(args.symbol.strip().upper(), notional, args.side, args.ttl)
    return asyncio.run(run_canary(env, copts))


def _up(args: argparse.Namespace) -> int:
    from btcbot.cli.up import UpOptions, run_up

    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    if args.duration is not None and args.duration <= 0:
        raise SystemExit("btcbot up: --duration must be positive")
    opts = UpOptions(args.duration, args.state_dir, symbols, args.seed, args.keep_state)
    return asyncio.run(run_up(opts))


def _sim(args: argparse.Namespace) -> int:
    forwarded = [a for a in args.args if a != "--"]
    os.execv(sys.executable, [sys.executable, "-m", "btcbot.sim", *forwarded])  # noqa: S606


def _service(args: argparse.Namespace) -> int:
    os.execv(sys.executable, [sys.executable, "-m", f"btcbot.{args.name}"])  # noqa: S606


def _nats_config(args: argparse.Namespace) -> int:
    from btcbot.cli.natsconfig import render

    for path in render(args.out, args.target, args.namespace, args.store_dir):
        print(path)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from btcbot.cli.doctor import run_doctor

    return asyncio.run(run_doctor(os.environ))


def _control(args: argparse.Namespace) -> int:
    from btcbot.cli.control import run_control

    return asyncio.run(
        run_control(os.environ, args.action, args.mode, args.reason, args.operator, cancel_resting=args.cancel_resting)
    )


def _ledger(args: argparse.Namespace) -> int:
    from btcbot.cli.control import operator_name
    from btcbot.cli.quarantine import run_quarantine

    return asyncio.run(run_quarantine(os.environ, args.adopt, operator_name(args.operator), args.all))


def _alert_relay(args: argparse.Namespace) -> int:
    from btcbot.cli.alertrelay import run_alert_relay

    return asyncio.run(run_alert_relay(os.environ))


def _dlq(args: argparse.Namespace) -> int:
    from btcbot.cli.control import run_dlq

    return asyncio.run(run_dlq(os.environ, args.service, args.limit))


def _replay(args: argparse.Namespace) -> int:
    from btcbot.cli.replay import run_from_args as run_replay

    return run_replay(args)


def _verify(args: argparse.Namespace) -> int:
    from btcbot.cli.verify import run_from_args

    return run_from_args(args)


def _report(args: argparse.Namespace) -> int:
    from btcbot.cli.report import ReportOptions, run_report

    quote = os.environ.get("LEDGER_QUOTE_ASSET", "TRY")
    ropts = ReportOptions(args.json, args.csv, args.plot, args.exchange, args.run_file, quote)
    return asyncio.run(run_report(ropts))


def _migrate(args: argparse.Namespace) -> int:
    from btcbot.cli.doctor import run_migrate

    return asyncio.run(run_migrate(os.environ))


# One table: command name -> what runs it (each imports its module only when chosen, so a command starts fast).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": _up,
    "sim": _sim,
    "service": _service,
    "nats-config": _nats_config,
    "doctor": _doctor,
    "canary": _canary,
    "control": _control,
    "ledger": _ledger,
    "alert-relay": _alert_relay,
    "dlq": _dlq,
    "replay": _replay,
    "verify": _verify,
    "report": _report,
    "migrate": _migrate,
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    redact_output(os.environ)
    args = build_parser().parse_args(argv)
    _quiet_logs()
    raise SystemExit(COMMANDS[args.command](args))


if __name__ == "__main__":
    main()

"""The `btcbot` command: run the whole system, one part of it, or check its dependencies."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from btcbot.runtime.redact import redact, register_env


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options, from the command table."""
    from btcbot.cli.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="btcbot", description="BTCTurk trading system")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, add_help=getattr(module, "ADD_HELP", True))
        module.add_arguments(command)
    return parser


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    redact_output(os.environ)
    args = build_parser().parse_args(argv)
    _quiet_logs()
    from btcbot.cli.commands import COMMANDS

    raise SystemExit(COMMANDS[args.command].run(args))


if __name__ == "__main__":
    main()

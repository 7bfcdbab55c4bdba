"""The `btcbot` command: run the whole system, one part of it, or check its dependencies."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Mapping
from typing import NoReturn, TextIO

from btcbot.cli.errors import EXIT_USER_ERROR, UserError, explain
from btcbot.runtime.redact import redact, register_env


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options, from the command table."""
    from btcbot.cli.commands import COMMANDS

    parser = OneLineErrorParser(prog="btcbot", description="BTCTurk trading system")
    parser.add_argument("--debug", action="store_true", help="show the traceback of any failure, and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, add_help=getattr(module, "ADD_HELP", True))
        module.add_arguments(command)
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """A usage mistake is one line naming the command and what is wrong, exit 2 (argparse's own code)."""

    def error(self, message: str) -> NoReturn:
        """Print `btcbot <command>: <message> (see --help)` and exit 2."""
        self.exit(EXIT_USER_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _quiet_logs(debug: bool = False) -> None:
    """The kit logs through structlog; in the CLI only warnings matter, and stdout belongs to results."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if debug else logging.WARNING),
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


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen command; a failure the user can fix is one line on stderr and exit 2 (errors.py)."""
    from btcbot.cli.commands import COMMANDS

    try:
        code: int = COMMANDS[args.command].run(args)
    except Exception as exc:
        message = None if args.debug else explain(exc)
        if message is None:
            raise
        print(f"btcbot {args.command}: {message}", file=sys.stderr, flush=True)
        return exc.exit_code if isinstance(exc, UserError) else EXIT_USER_ERROR
    return code


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse `btcbot [--debug] <command> ...`; a command with FORWARDS_ARGUMENTS gets the rest as `forwarded`."""
    from btcbot.cli.commands import COMMANDS

    head, rest = argv, list[str]()
    for index, token in enumerate(argv):
        module = COMMANDS.get(token)
        if module is not None and getattr(module, "FORWARDS_ARGUMENTS", False):
            head, rest = argv[: index + 1], argv[index + 1 :]
            break
        if not token.startswith("-"):
            break
    args = build_parser().parse_args(head)
    args.forwarded = rest
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    redact_output(os.environ)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _quiet_logs(args.debug)
    raise SystemExit(run_command(args))


if __name__ == "__main__":
    main()

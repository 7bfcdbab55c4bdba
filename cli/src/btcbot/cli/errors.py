"""What the CLI prints when a command fails for a reason the user can fix: one line, exit 2, no traceback.

Exception
├── UserError                 raised by a command: a bad option, symbol or number, `up` asked to trade live
└── (explained where they arrive, never caught inside commands)
    ├── SettingsError, InfraError, VerifyError, ReplayError, MigrationError, StoreUnavailable
    │                         their message already names the variable or value
    ├── DependencyUnavailable NATS, Redis or Postgres did not answer (the kit's connect)
    ├── asyncpg errors        Postgres unreachable, unknown database, not migrated, login refused
    ├── redis errors          Redis unreachable
    ├── OSError, TimeoutError raised inside a Postgres, Redis or NATS client: that server did not answer
    └── FileNotFoundError, PermissionError, IsADirectoryError with a file name (a --run-file, an --out)

Anything else is a bug and keeps its traceback. `btcbot --debug <command>` shows the traceback of every failure.
"""

from __future__ import annotations

from types import TracebackType

EXIT_USER_ERROR = 2

# Which setting points at each server, for "check ..." hints (the run file of `btcbot up` may name it instead).
_SERVERS = {
    "asyncpg": ("Postgres", "DATABASE_URL"),
    "redis": ("Redis", "REDIS_URL"),
    "nats": ("NATS", "NATS_URL"),
}
# Exceptions whose message is already the one line to print, by class name (no import of their modules here).
_SELF_EXPLAINED = frozenset(
    {"SettingsError", "InfraError", "VerifyError", "ReplayError", "MigrationError", "StoreUnavailable"}
)


class UserError(Exception):
    """A mistake the user can fix; the message names the option, variable or value."""

    exit_code = EXIT_USER_ERROR


def explain(exc: BaseException) -> str | None:
    """The one line for a failure the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, BaseExceptionGroup):
        return next((m for m in map(explain, exc.exceptions) if m is not None), None)
    name = type(exc).__name__
    if isinstance(exc, UserError) or any(c.__name__ in _SELF_EXPLAINED for c in type(exc).__mro__):
        return str(exc)
    server = _server_of(exc)
    if name == "DependencyUnavailable":
        return f"{exc}{_hint(server or _server_named_in(str(exc)))}"
    if name == "InvalidCatalogNameError":
        return f"{exc}: check DATABASE_URL (`btcbot up` creates its database; `createdb` makes one by hand)"
    if name == "UndefinedTableError":
        return f"the database has no ledger tables ({exc}): run `btcbot migrate` with the same DATABASE_URL"
    if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        return f"Postgres refused the login: {exc}: check DATABASE_URL"
    if server is not None and (isinstance(exc, OSError | TimeoutError) or _is_connection_error(exc)):
        label = _SERVERS[server][0]
        detail = str(exc) or "no answer within the timeout"
        return f"{label} does not answer: {detail}{_hint(server)}"
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return None


def _hint(server: str | None) -> str:
    return "" if server is None else f" (check {_SERVERS[server][1]}, or the run file of `btcbot up`)"


def _server_named_in(text: str) -> str | None:
    lowered = text.lower()
    return next((key for key, (label, _var) in _SERVERS.items() if lowered.startswith(label.lower())), None)


def _is_connection_error(exc: BaseException) -> bool:
    """A client library's own "could not connect" class (redis' ConnectionError, nats' NoServersError...)."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectionError", "TimeoutError", "NoServersError", "PostgresConnectionError"})


def _server_of(exc: BaseException) -> str | None:
    """Which server's client raised `exc`: its class's package, else the innermost client frame of its traceback."""
    found = _package(type(exc).__module__)
    if found is not None:
        return found
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _frames_package(current.__traceback__)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _frames_package(tb: TracebackType | None) -> str | None:
    found: str | None = None
    while tb is not None:
        found = _package(str(tb.tb_frame.f_globals.get("__name__", ""))) or found
        tb = tb.tb_next
    return found


def _package(module: str) -> str | None:
    top = module.split(".", 1)[0]
    return top if top in _SERVERS else None

"""Pure helpers about server endpoints: version checks, URL rewriting and redaction, state files.

Nothing here touches the network, the clock or the environment, so it is unit-tested directly.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit, urlunsplit

from btcbot.runtime.redact import redact

_VERSION_RE = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_DB_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version | None:
    """Parse the leading `major[.minor[.patch]]` of a version string such as `v2.9.10` or `15.20 (Debian)`."""
    match = _VERSION_RE.search(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor or 0), int(patch or 0)


def format_version(version: Version) -> str:
    """Render a version tuple as `major.minor.patch`."""
    return ".".join(str(part) for part in version)


def version_reason(server: str, text: str, minimum: Version) -> str | None:
    """None if `text` names a version >= `minimum`, else why the server is refused."""
    version = parse_version(text)
    if version is None:
        return f"{server} reports an unreadable version {text!r}"
    if version < minimum:
        return f"{server} {format_version(version)} is older than the required {format_version(minimum)}"
    return None


def redact_url(url: str) -> str:
    """The URL with its credentials masked (a password, or a token alone), by the kit's one `redact`."""
    return redact(url)


def with_database(url: str, name: str) -> str:
    """The Postgres URL `url` pointed at database `name`, keeping credentials, host and query."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def check_database_name(name: str) -> str:
    """Return `name` if it is a safe unquoted Postgres identifier, else raise ValueError.

    Database names are interpolated into DDL (CREATE/DROP DATABASE take no parameters), so only
    plain lower-case identifiers are accepted.
    """
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
    return name


def parse_nats_ports_file(text: str) -> tuple[str, str | None]:
    """The client URL and monitoring URL (if any) from a nats-server `--ports_file_dir` file."""
    data = json.loads(text)
    clients = data.get("nats") or []
    if not clients:
        raise ValueError("nats-server ports file lists no client URL")
    monitors = data.get("monitoring") or []
    return str(clients[0]), (str(monitors[0]) if monitors else None)


def postmaster_ready(pid_file_text: str, pid: int) -> bool:
    """True when a postmaster.pid file says that postmaster `pid` accepts connections.

    Line 1 holds the pid (a stale file from a killed run names another one); since PostgreSQL 10
    line 8 holds the status (`starting`, `ready`, `stopping`), the line pg_ctl waits on too.
    """
    lines = pid_file_text.splitlines()
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

"""One redaction function for everything the system prints: logs, errors, CLI output, summaries.

Two nets, both applied by `redact`:
- forms: credentials in URLs (`nats://TOKEN@h`, `redis://:pw@h`, `postgresql://u:pw@h`), secret-named query
  parameters and `key=value` pairs (`?password=`, `&token=`, `apiKey=`), secret-named JSON members
  (`"api_secret": "..."`) and authorization headers (`Authorization: Bearer ...`, `X-PCK: ...`);
- values: every secret this process was given (settings' SecretStr fields, passwords and tokens of URLs in
  settings, secret-named environment variables) is registered once and masked wherever it appears, whatever
  the text around it. That catches the forms nobody anticipated (an exception quoting a password, a key in a
  path).
Pure apart from the process-wide registry of values; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

REDACTED = "***"
# Shorter values are not registered: masking "a" or a dev password like "btcbot" everywhere would destroy the
# text (logger names, key prefixes), not protect it. Such values are still masked where they appear as a form.
MIN_SECRET_LENGTH = 8

# Names whose values are secrets (keys of structured logs, JSON members, query parameters, environment).
SECRET_NAME = re.compile(
    r"(secret|passw(or)?d|pwd|token|api[_-]?key|apikey|signature|authorization|x-pck|x-signature"
    r"|credential|signing[_-]?keys?|hmac|private[_-]?key|nkey)",
    re.IGNORECASE,
)
# Environment variables whose values are registered as secrets. Not API keys: a key is an identifier the
# exchange sees in clear on every request; it is masked where it is named, not hunted everywhere.
SECRET_VALUE_NAME = re.compile(r"(secret|passw(or)?d|token|signing[_-]?keys?|hmac|private[_-]?key|nkey)", re.I)
_NAME = (
    r"[A-Za-z0-9_.-]*(?:secret|passw(?:or)?d|pwd|token|api[_-]?key|apikey|signature|credential|signing[_-]?keys?"
    r"|hmac)[A-Za-z0-9_.-]*"
)
# scheme://userinfo@ : the userinfo is a token alone or user:password.
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:?#'\"]*)(?::(?P<pw>[^\s/@'\"]*))?@"
)
_QUERY = re.compile(rf"(?P<name>(?<![A-Za-z0-9_]){_NAME})=(?P<value>[^&\s#;,'\"]+)", re.IGNORECASE)
_JSON_MEMBER = re.compile(rf"(?P<name>[\"']{_NAME}[\"']\s*:\s*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*')", re.IGNORECASE)
_HEADER = re.compile(
    r"(?P<name>\b(?:authorization|x-pck|x-signature|x-sim-admin-token)\s*[:=]\s*)"
    r"(?P<value>(?:bearer\s+|basic\s+)?[^\s,;'\"]+)",
    re.IGNORECASE,
)

# URL schemes whose lone userinfo is a token (nats://TOKEN@host), registered as a secret value.
TOKEN_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})

_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this value wherever it appears from now on (also in its URL-encoded form)."""
    if value is None or len(value) < MIN_SECRET_LENGTH:
        return
    _registered.add(value)
    encoded = quote(value, safe="")
    if encoded != value:
        _registered.add(encoded)


def forget_secrets() -> None:
    """Drop every registered value (tests only)."""
    _registered.clear()


def register_url(url: str | None) -> None:
    """Register the password, or the lone token, of a URL's userinfo."""
    if not url or "://" not in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        register_secret(unquote(parts.password))
        register_secret(parts.password)
    elif "@" in parts.netloc and parts.username and parts.scheme in TOKEN_SCHEMES:
        # NATS reads a lone userinfo as a token; elsewhere (postgresql://postgres@h) it is a user name.
        register_secret(unquote(parts.username))
        register_secret(parts.username)


def register_env(environ: Mapping[str, str]) -> None:
    """Register secret-named variables' values and the credentials of every URL-valued variable."""
    for name, value in environ.items():
        if "://" in value:
            register_url(value)
        elif SECRET_VALUE_NAME.search(name) and not name.endswith(("_FILE", "_PATH")):
            register_secret(value)


def _userinfo(match: re.Match[str]) -> str:
    if match.group("pw") is not None:
        return f"{match.group('scheme')}{match.group('user')}:{REDACTED}@"
    return f"{match.group('scheme')}{REDACTED}@"


def redact(text: str) -> str:
    """The text with every credential form and every registered secret value masked."""
    if not text:
        return text
    for value in sorted(_registered, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    text = _URL_USERINFO.sub(_userinfo, text)
    text = _JSON_MEMBER.sub(lambda m: f'{m.group("name")}"{REDACTED}"', text)
    text = _QUERY.sub(lambda m: f"{m.group('name')}={REDACTED}", text)
    return _HEADER.sub(lambda m: f"{m.group('name')}{REDACTED}", text)


def redact_value(key: str, value: Any) -> Any:
    """A structured value with secret-named members masked and every string redacted (recursively)."""
    if SECRET_NAME.search(key) and value not in (None, "", False, 0):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value("", v) for v in value]
    return value

"""structlog JSON logs: service, instance, trace and span ids, a versioned schema, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

LOG_SCHEMA_VERSION = 1

_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|api_key|apikey|signature|authorization|x-pck|x-signature)", re.I
)
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
REDACTED = "***"


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values of secret-looking keys and passwords inside URLs."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value not in (None, ""):
            event[key] = REDACTED
        elif isinstance(value, str) and "://" in value:
            event[key] = _URL_CREDENTIALS.sub(rf"\g<1>{REDACTED}@", value)
    return event


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Attach the current span's trace and span ids so logs join traces."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = f"{ctx.trace_id:032x}"
        event["span_id"] = f"{ctx.span_id:016x}"
    return event


def configure_logging(service: str, instance: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog (and stdlib logging through it) for one service process."""
    numeric = logging.getLevelName(level)
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, instance=instance, log_schema=LOG_SCHEMA_VERSION)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if isinstance(numeric, int) else logging.INFO)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger (bound with the module name when given)."""
    log: structlog.stdlib.BoundLogger = structlog.get_logger(name) if name else structlog.get_logger()
    return log

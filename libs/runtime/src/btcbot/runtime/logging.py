"""structlog JSON logs: service, instance, trace and span ids, a versioned schema, secrets redacted."""

from __future__ import annotations

import logging
import sys
import traceback
import types
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from btcbot.runtime.redact import redact, redact_value

LOG_SCHEMA_VERSION = 1


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values of secret-named keys, credentials in every string, and every registered secret value."""
    for key, value in list(event.items()):
        event[key] = redact_value(str(key), value)
    return event


def redact_rendered(_: Any, __: str, line: Any) -> Any:
    """The last net: the rendered line itself (exception text included) passes through `redact`."""
    return redact(line) if isinstance(line, str) else line


def _redacting_excepthook(kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    """A crash's traceback goes to stderr redacted, like every log line."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))
    sys.stderr.flush()


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
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact_secrets, renderer, redact_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, instance=instance, log_schema=LOG_SCHEMA_VERSION)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
                redact_rendered,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if isinstance(numeric, int) else logging.INFO)
    sys.excepthook = _redacting_excepthook


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger (bound with the module name when given)."""
    log: structlog.stdlib.BoundLogger = structlog.get_logger(name) if name else structlog.get_logger()
    return log

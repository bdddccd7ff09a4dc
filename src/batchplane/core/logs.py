"""Log records of every service: plain text or one JSON object per line, never secrets.

`BATCHPLANE_LOG_FORMAT=json` makes each record one JSON object with `ts`, `level`,
`logger`, `message`, the `service`, the fields of the current `log_context` (batch and
item ids, delivery ids), any `extra=` fields, and `trace_id` / `span_id` when a span is
current. Both formats pass the final text through `redact`, which masks bearer tokens,
`bp_…` API tokens, `whsec_…` webhook secrets and Authorization / X-API-Key header
values wherever they appear, exception text included: the code never logs them on
purpose, and this keeps a library's error message from doing it by accident.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from opentelemetry import trace

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "batchplane_log_context", default=MappingProxyType({})
)

_SECRETS = re.compile(
    r"(?P<header>(?:authorization|x-api-key)[\"']?\s*[:=,]\s*[\"']?)(?:bearer\s+)?[^\s\"',;}]+"
    r"|(?P<bearer>bearer\s+)[^\s\"',;}]+"
    r"|\bbp_[A-Za-z0-9_\-]{8,}"
    r"|\bwhsec_[A-Za-z0-9+/=]{8,}",
    re.IGNORECASE,
)
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """`text` with every token, secret and credential header value masked."""

    def mask(match: re.Match[str]) -> str:
        return (match.group("header") or match.group("bearer") or "") + REDACTED

    return _SECRETS.sub(mask, text)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (e.g. `batch_id=…`) to every record logged inside the block."""
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **fields}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class TextFormatter(logging.Formatter):
    """The classic one-line format, plus the context fields, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {**_CONTEXT.get(), **_extras(record)}
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
        }
        entry.update(_CONTEXT.get())
        entry.update(_extras(record))
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def configure_logging(level: str, *, fmt: str = "text", service: str = "batchplane") -> None:
    """Log to stderr at `level`, as `fmt` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiokafka logs every failed connection attempt at ERROR while we retry.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

"""The log formats: JSON records with context, extras and trace ids; secrets masked."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from batchplane.core.logs import REDACTED, JsonFormatter, TextFormatter, log_context, redact

TOKEN = "bp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0Uv"
SECRET = "whsec_" + "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("batchplane.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_records_carry_context_extras_and_the_service() -> None:
    with log_context(batch_id=42):
        line = JsonFormatter("processor").format(_record("done %d", 3, delivery_id="whd_1"))
    entry = json.loads(line)
    assert entry["message"] == "done 3"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "batchplane.test"
    assert entry["service"] == "processor"
    assert entry["batch_id"] == 42
    assert entry["delivery_id"] == "whd_1"
    assert entry["ts"].endswith("+00:00")
    assert "trace_id" not in entry


def test_context_ends_with_its_block() -> None:
    with log_context(batch_id=1):
        pass
    assert "batch_id" not in json.loads(JsonFormatter("x").format(_record("m")))


def test_json_records_name_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        entry = json.loads(JsonFormatter("intake").format(_record("m")))
    context = span.get_span_context()
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")


def test_exceptions_are_one_field_of_the_record() -> None:
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        record = _record("failed")
        record.exc_info = __import__("sys").exc_info()
    entry = json.loads(JsonFormatter("x").format(record))
    assert "ValueError" in entry["exception"]
    assert TOKEN not in entry["exception"]


def test_secrets_are_masked_in_both_formats() -> None:
    message = (
        f"Authorization: Bearer {TOKEN}; x-api-key={TOKEN} secret {SECRET} "
        f"headers {{'authorization': 'Bearer abc.def'}}"
    )
    for formatter in (JsonFormatter("x"), TextFormatter()):
        line = formatter.format(_record("%s", message))
        assert TOKEN not in line
        assert SECRET not in line
        assert "abc.def" not in line
        assert REDACTED in line


def test_redaction_leaves_ordinary_text_alone() -> None:
    text = "batch 12 of org org_abc: 3 items, delivery whd_x to https://hooks.test/a"
    assert redact(text) == text
    assert redact(f"token={TOKEN}") == f"token={REDACTED}"

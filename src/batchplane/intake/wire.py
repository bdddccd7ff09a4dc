"""What every servicer shares to speak gRPC and print the seeds' JSON through Envoy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import struct_pb2

from batchplane.core import jsontext
from batchplane.core.clock import rfc3339
from batchplane.intake.auth import Metadata

Context = grpc.aio.ServicerContext[Any, Any]
# The transcoder prints JSON null only for a Value set to null_value.
NULL = struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)


def call_metadata(context: Context) -> Metadata:
    """The call's metadata (HTTP headers, lower-cased, for gateway callers)."""
    return context.invocation_metadata() or ()


def text_or_null(value: str | None) -> struct_pb2.Value:
    return NULL if value is None else struct_pb2.Value(string_value=value)


def time_or_null(moment: datetime | None) -> struct_pb2.Value:
    return NULL if moment is None else struct_pb2.Value(string_value=rfc3339(moment))


def json_body(value: Any) -> httpbody_pb2.HttpBody:
    """An exact JSON response (bare arrays, key order, nulls) for the transcoder to pass on."""
    return httpbody_pb2.HttpBody(content_type="application/json", data=jsontext.dumps(value))

"""Translate domain errors into gRPC status plus the gateway's HTTP hints, in one place.

The gateway's Lua filter reads two initial-metadata keys: `x-http-status`
(the HTTP status to answer) and `x-error-body` (the exact JSON body). Envoy's
transcoder alone can only map gRPC codes to a handful of HTTP statuses, and
cannot produce 202, 207, 402 or 422, nor a family's own error shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from batchplane.core.errors import BatchplaneError
from batchplane.core.interceptors import Unary, UnaryInterceptor

log = logging.getLogger(__name__)

HTTP_STATUS_KEY = "x-http-status"
ERROR_BODY_KEY = "x-error-body"

ErrorRenderer = Callable[[BatchplaneError], dict[str, Any]]

_GRPC_CODE_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.FAILED_PRECONDITION,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def default_error_body(error: BatchplaneError) -> dict[str, Any]:
    """The contract's default shape: `{"error": message, "code": code, …extra}`."""
    return {"error": error.message, "code": error.code, **error.extra}


def grpc_code_for(http_status: int) -> grpc.StatusCode:
    return _GRPC_CODE_BY_HTTP.get(http_status, grpc.StatusCode.INTERNAL)


def json_header_value(body: Mapping[str, Any]) -> str:
    # Header values must be ASCII; ensure_ascii escapes everything else.
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


async def send_http_status(
    context: grpc.aio.ServicerContext[Any, Any],
    status: int,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Announce a success status other than 200 and extra response headers.

    Must happen in initial metadata: the transcoder drops the trailers of a
    successful unary call.
    """
    metadata = [(HTTP_STATUS_KEY, str(status)), *((headers or {}).items())]
    await context.send_initial_metadata(metadata)


class ErrorInterceptor(UnaryInterceptor):
    """Catches errors of unary handlers and answers them in the wire format.

    `renderers` maps a service's full name (e.g. `batchplane.api.lookup.v1.
    BulkLookupService`) to the function that shapes its error bodies.
    """

    def __init__(self, renderers: Mapping[str, ErrorRenderer] | None = None) -> None:
        self._renderers = dict(renderers or {})

    def wrap(self, inner: Unary, call: grpc.HandlerCallDetails) -> Unary:
        service = call.method.lstrip("/").split("/")[0]
        render = self._renderers.get(service, default_error_body)

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except BatchplaneError as error:
                await _abort(context, error, render)
            except Exception:
                log.exception("unhandled error in %s", call.method)
                await _abort(context, BatchplaneError("internal error"), render)

        return guarded


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: BatchplaneError, render: ErrorRenderer
) -> None:
    metadata = [
        (HTTP_STATUS_KEY, str(error.http_status)),
        (ERROR_BODY_KEY, json_header_value(render(error))),
        *error.headers.items(),
    ]
    await context.send_initial_metadata(metadata)
    await context.abort(grpc_code_for(error.http_status), error.message)

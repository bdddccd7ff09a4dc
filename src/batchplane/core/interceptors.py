"""The one way a server interceptor wraps unary calls.

Every interceptor of ours (errors to the wire format, metrics, tracing) does the same
around its own behaviour: ask for the handler, leave streams and unknown methods
alone, and rebuild the unary handler around a wrapped function with the original
(de)serializers. `UnaryInterceptor` does that; a subclass only says how to wrap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

# A unary behaviour under grpc.aio: (request, context) -> response.
Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary call with `wrap`; streams pass through unchanged."""

    def wrap(self, inner: Unary, call: grpc.HandlerCallDetails) -> Unary:
        """The behaviour that runs instead of `inner` for `call`."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner: Any = handler.unary_unary  # an async function under grpc.aio
        return grpc.unary_unary_rpc_method_handler(
            self.wrap(inner, handler_call_details),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

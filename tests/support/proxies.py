"""Real proxies between a client and intake, that fail on request.

* `GrpcProxy` is a gRPC server forwarding every unary call, as raw bytes with its
  metadata, to the upstream server. It can refuse the next calls with UNAVAILABLE
  before they reach upstream, or forward them and then answer UNAVAILABLE as if the
  answer were lost on the way back. It records every attempt.
* `TcpProxy` pipes TCP connections to an upstream port. `cut()` stops listening and
  resets every open connection, as a dropped network path would, and `restore()`
  listens again; `reset_connections()` only resets the open ones; `lose_answer_to` forwards one request and resets the connection
  before its answer comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.support.broker import free_port

# Metadata a proxy must not copy from one call to the next.
_HOP_BY_HOP = ("user-agent", "grpc-")


@dataclass
class Attempt:
    """One call as the proxy saw it."""

    method: str
    metadata: dict[str, str]
    # The upstream answer's status; None when the proxy refused the call itself.
    upstream: grpc.StatusCode | None = None


@dataclass
class GrpcProxy:
    upstream: str
    # The next this many calls are answered UNAVAILABLE without reaching upstream.
    refuse: int = 0
    # The next this many calls reach upstream, and their answer is replaced by UNAVAILABLE.
    lose_answers: int = 0
    # Awaited before a call is forwarded (with that call's attempt).
    before_forward: Callable[[Attempt], Awaitable[None]] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    port: int = 0

    def at(self, method_suffix: str) -> list[Attempt]:
        return [a for a in self.attempts if a.method.endswith(method_suffix)]

    async def forward(self, method: str, request: bytes, context: Any) -> bytes:
        metadata = [
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if not key.startswith(":") and not key.startswith(_HOP_BY_HOP)
        ]
        attempt = Attempt(method, {k: v for k, v in metadata if isinstance(v, str)})
        self.attempts.append(attempt)
        if self.refuse > 0:
            self.refuse -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: upstream unreachable")
        if self.before_forward is not None:
            await self.before_forward(attempt)
        call = self._channel.unary_unary(method)(
            request, metadata=metadata, timeout=context.time_remaining()
        )
        try:
            response: bytes = await call
        except grpc.aio.AioRpcError as error:
            attempt.upstream = error.code()
            await self._answer_error(context, error)
            raise AssertionError("unreachable: abort raises") from None
        attempt.upstream = grpc.StatusCode.OK
        if self.lose_answers > 0:
            self.lose_answers -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: connection lost")
        await context.send_initial_metadata(tuple(await call.initial_metadata()))
        return response

    async def _answer_error(self, context: Any, error: grpc.aio.AioRpcError) -> None:
        if self.lose_answers > 0:
            self.lose_answers -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: connection lost")
        await context.send_initial_metadata(tuple(error.initial_metadata() or ()))
        await context.abort(error.code(), error.details() or "")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[GrpcProxy]:
        self._channel = grpc.aio.insecure_channel(self.upstream)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_Forwarder(self),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            yield self
        finally:
            await server.stop(grace=None)
            await self._channel.close()


class _Forwarder(grpc.GenericRpcHandler):
    """Every method, unary-unary, bytes in and out (no (de)serializers)."""

    def __init__(self, proxy: GrpcProxy) -> None:
        self._proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method

        async def handle(request: bytes, context: Any) -> bytes:
            return await self._proxy.forward(method, request, context)

        return grpc.unary_unary_rpc_method_handler(handle)


@dataclass
class TcpProxy:
    """Pipes connections from `port` to 127.0.0.1:`upstream_port`.

    `cut()` stops listening and resets every open connection, as a network path that
    goes away would; `restore()` listens again on the same port.
    """

    upstream_port: int
    port: int = field(default_factory=free_port)
    connections: int = 0
    # The next client bytes holding this marker reach upstream, then the connection is
    # reset before any answer gets back (the answer to a COMMIT lost on the way, say).
    lose_answer_to: bytes | None = None
    # ... and then stop listening too, as a server that went away (until `restore()`).
    dark_after_lost_answer: bool = False
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def cut(self) -> None:
        """The path goes away: no new connections, open ones reset."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.reset_connections()

    async def reset_connections(self) -> None:
        """Open connections reset; new ones are still accepted (a blip, not an outage)."""
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                # SO_LINGER 0 sends an RST: the peer sees "connection reset".
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        answers = _Answers()
        for task in (
            asyncio.create_task(self._requests(reader, up_writer, answers)),
            asyncio.create_task(self._pipe(up_reader, writer, answers)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _requests(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, answers: _Answers
    ) -> None:
        """Client to upstream; losing the answer to a marked request on the way."""
        try:
            while data := await source.read(65536):
                marker = self.lose_answer_to
                if marker is not None and marker in data:
                    self.lose_answer_to = None
                    answers.dropped = True
                    sink.write(data)
                    await sink.drain()
                    await asyncio.sleep(0.5)  # upstream acts on the request meanwhile
                    if self.dark_after_lost_answer and self._server is not None:
                        self._server.close()
                        self._server = None
                    answers.reset()
                    return
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, answers: _Answers
    ) -> None:
        answers.downstream = sink
        try:
            while data := await source.read(65536):
                if answers.dropped:
                    continue
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()


@dataclass
class _Answers:
    """The upstream-to-client side of one connection."""

    downstream: asyncio.StreamWriter | None = None
    # Set once a request's answer is to be lost: nothing more goes back.
    dropped: bool = False

    def reset(self) -> None:
        if self.downstream is not None:
            self.downstream.transport.abort()


@contextlib.asynccontextmanager
async def tcp_proxy(upstream_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()

"""gRPC servicer of ItemExecutorService: runs a synchronous batch's items concurrently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from batchplane.api.framework.v1 import framework_pb2
from batchplane.api.processor.v1 import executor_pb2, executor_pb2_grpc
from batchplane.core.errors import Unavailable
from batchplane.processor.sync.answers import Answer, BadItem, SyncFamily, invalid

log = logging.getLogger(__name__)


class ItemExecutor(executor_pb2_grpc.ItemExecutorServiceServicer):
    """Answers items of the synchronous families, at most `concurrency` at a time."""

    def __init__(self, families: Iterable[SyncFamily], *, concurrency: int = 16) -> None:
        self._families: Mapping[str, SyncFamily] = {f.family: f for f in families}
        self._slots = asyncio.Semaphore(concurrency)

    async def ExecuteItems(
        self,
        request: executor_pb2.ExecuteItemsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_pb2.ExecuteItemsResponse:
        family = self._families.get(request.family)
        if family is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown family {request.family!r}"
            )
            raise AssertionError("unreachable")
        items = [json_format.MessageToDict(item) for item in request.items]
        try:
            answers = await asyncio.gather(*(self._one(family, request.org_id, i) for i in items))
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, error.message)
            raise AssertionError("unreachable") from error
        return executor_pb2.ExecuteItemsResponse(results=[_result(a) for a in answers])

    async def _one(self, family: SyncFamily, org_id: str, item: dict[str, Any]) -> Answer:
        async with self._slots:
            try:
                return await family.answer(org_id, item)
            except BadItem as error:
                return invalid(str(error))
            except Unavailable:
                raise
            except Exception:
                log.exception("item of %s failed", family.family)
                return Answer(500, code="internal", message="internal error")


def _result(answer: Answer) -> framework_pb2.ItemResult:
    if answer.status == 200:
        data = struct_pb2.Struct()
        data.update(answer.data or {})
        return framework_pb2.ItemResult(status=200, data=data)
    return framework_pb2.ItemResult(
        status=answer.status,
        error=framework_pb2.ItemError(code=answer.code, message=answer.message),
    )

"""The client reads every family's error shape as intake renders it: the bodies here are
made by intake's own renderers and wire encoding, not copied by hand."""

from __future__ import annotations

import grpc
import pytest

from batchplane.client import (
    AuthenticationError,
    BadRequest,
    Conflict,
    DeadlineExceeded,
    IdempotencyConflict,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    UnprocessableEntity,
)
from batchplane.client._exceptions import translate
from batchplane.core import errors
from batchplane.intake.enrichment_api import enrichment_error_body
from batchplane.intake.radars_api import radar_error_body
from batchplane.intake.wire_errors import (
    ERROR_BODY_KEY,
    HTTP_STATUS_KEY,
    ErrorRenderer,
    default_error_body,
    grpc_code_for,
    json_header_value,
)


def _as_intake_answers(
    error: errors.BatchplaneError, render: ErrorRenderer
) -> grpc.aio.AioRpcError:
    """The AioRpcError a caller gets when intake's ErrorInterceptor aborts with `error`."""
    initial = grpc.aio.Metadata(
        (HTTP_STATUS_KEY, str(error.http_status)),
        (ERROR_BODY_KEY, json_header_value(render(error))),
        *error.headers.items(),
    )
    return grpc.aio.AioRpcError(
        grpc_code_for(error.http_status), initial, grpc.aio.Metadata(), details=error.message
    )


IN_FLIGHT = errors.Conflict(
    "a request with this Idempotency-Key is still in flight; retry later",
    code="idempotency_conflict",
    headers={"retry-after": "1"},
)


@pytest.mark.parametrize("render", [default_error_body, enrichment_error_body, radar_error_body])
def test_the_in_flight_idempotency_conflict_is_recognised_in_every_family(
    render: ErrorRenderer,
) -> None:
    failure = translate(_as_intake_answers(IN_FLIGHT, render))

    assert type(failure) is IdempotencyConflict
    assert failure.retryable
    assert (failure.http_status, failure.grpc_code) == (409, grpc.StatusCode.ABORTED)


@pytest.mark.parametrize("render", [default_error_body, enrichment_error_body, radar_error_body])
def test_other_conflicts_are_plain_and_not_retryable(render: ErrorRenderer) -> None:
    error = errors.Conflict(
        "Radar already exists", code="radar_conflict", extra={"conflicting_radar_id": "radar_1"}
    )
    failure = translate(_as_intake_answers(error, render))

    assert type(failure) is Conflict
    assert not failure.retryable
    if render is radar_error_body:
        assert failure.body["conflicting_radar_id"] == "radar_1"


def test_the_default_shape_gives_code_and_message() -> None:
    error = errors.PaymentRequired("insufficient credits: 3 needed, 1 available")
    failure = translate(_as_intake_answers(error, default_error_body))

    assert type(failure) is PaymentRequired
    assert (failure.code, failure.message) == ("insufficient_credits", error.message)
    assert failure.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert str(failure) == f"[402 insufficient_credits] {error.message}"


def test_seed_002_codes_are_lower_cased() -> None:
    failure = translate(
        _as_intake_answers(
            errors.InvalidRequest("bad tasks", http_status=400), enrichment_error_body
        )
    )

    assert type(failure) is BadRequest
    assert (failure.code, failure.message) == ("validation_error", "bad tasks")
    assert failure.body == {"error": "VALIDATION_ERROR", "message": "bad tasks"}


def test_seed_003_bodies_keep_their_field_errors() -> None:
    error = errors.InvalidRequest(
        "Validation error",
        code="validation_error",
        http_status=400,
        extra={"errors": [{"field": "domain", "message": "is required"}]},
    )
    failure = translate(_as_intake_answers(error, radar_error_body))

    assert type(failure) is BadRequest
    assert failure.code is None  # the seed's body has only the numeric code
    assert failure.body["errors"] == [{"field": "domain", "message": "is required"}]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.Unauthenticated("invalid API token"), AuthenticationError),
        (errors.NotFound("batch 9 not found"), NotFound),
        (errors.InvalidRequest("domains must be a non-empty array"), UnprocessableEntity),
        (errors.RateLimited("slow down", headers={"retry-after": "7"}), RateLimited),
        (errors.Unavailable(), ServiceUnavailable),
        (errors.BatchplaneError("internal error"), ServerError),
    ],
)
def test_each_status_has_its_class(
    error: errors.BatchplaneError, expected: type[Exception]
) -> None:
    failure = translate(_as_intake_answers(error, default_error_body))

    assert type(failure) is expected
    assert failure.retryable == (expected is ServiceUnavailable)


def test_rate_limits_say_when_to_come_back() -> None:
    error = errors.RateLimited("slow down", headers={"retry-after": "7"})
    failure = translate(_as_intake_answers(error, default_error_body))

    assert isinstance(failure, RateLimited)
    assert failure.retry_after == 7.0
    assert not failure.retryable  # the client never retries a 429 by itself


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.INVALID_ARGUMENT, UnprocessableEntity),
        (grpc.StatusCode.UNAVAILABLE, ServiceUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, ServerError),
    ],
)
def test_errors_without_a_body_follow_the_grpc_code(
    code: grpc.StatusCode, expected: type[Exception]
) -> None:
    """Server streams (WatchBatch) and transport failures carry no HTTP hints."""
    failure = translate(
        grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="why")
    )

    assert type(failure) is expected
    assert (failure.message, failure.code, failure.body) == ("why", None, {})

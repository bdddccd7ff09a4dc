"""Every error the client raises, translated from gRPC in exactly one place (`translate`).

    ClientError                     message, grpc_code, http_status, code, body, retryable
    ├── TransportError              no usable answer from the service
    │   ├── ServiceUnavailable      UNAVAILABLE: unreachable, stream dropped, or 503
    │   │                           (retryable: retried with backoff before it is raised)
    │   └── DeadlineExceeded        DEADLINE_EXCEEDED: the call's deadline passed
    └── APIError                    the service refused the call
        ├── BadRequest              400  malformed JSON; seed 002/003 validation errors
        ├── AuthenticationError     401  missing, unknown or revoked token
        ├── PaymentRequired         402  the balance cannot pay for the batch
        ├── PermissionDenied        403  insufficient_scope, organization_forbidden
        ├── NotFound                404  unknown id, or another organisation's
        ├── Conflict                409  batch_not_cancellable, nothing_to_retry, radar conflict
        │   └── IdempotencyConflict 409  idempotency_conflict: the same key is still in
        │                                flight (retryable: retried before it is raised)
        ├── UnprocessableEntity     422  validation, batch_too_large, idempotency_key_reuse
        ├── RateLimited             429  rate_limited, quota_exceeded (`retry_after`)
        └── ServerError             500, and any status the client does not know

Intake answers an error with a gRPC status plus, in initial metadata, the HTTP status it
means (`x-http-status`) and the family's JSON error body (`x-error-body`). The class
follows the HTTP status when there is one, else the gRPC code (server streams carry no
body). `code` is the body's machine code, lower-cased whatever the family's style
(`insufficient_credits`, `VALIDATION_ERROR` → `validation_error`); seed 003's radar bodies
carry none, so their `code` is None and `body` holds `errors` and `conflicting_radar_id`.

Retryability is the `retryable` field, not the class: only UNAVAILABLE and the
in-flight idempotency conflict are ever retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

HTTP_STATUS_KEY = "x-http-status"
ERROR_BODY_KEY = "x-error-body"
RETRY_AFTER_KEY = "retry-after"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"


class ClientError(Exception):
    """Base of every error the client raises."""

    http_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        grpc_code: grpc.StatusCode,
        http_status: int | None = None,
        code: str | None = None,
        body: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.grpc_code = grpc_code
        if http_status is not None:
            self.http_status = http_status
        self.code = code
        self.body: dict[str, Any] = dict(body or {})
        # Response metadata (lower-case keys): ratelimit headers, idempotency-replayed, …
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retryable = retryable

    def __str__(self) -> str:
        status = self.http_status if self.http_status is not None else self.grpc_code.name
        code = f" {self.code}" if self.code else ""
        return f"[{status}{code}] {self.message}"


class TransportError(ClientError):
    """No usable answer from the service."""


class ServiceUnavailable(TransportError):
    """The service could not be reached, dropped the call, or answered 503."""

    http_status = 503


class DeadlineExceeded(TransportError):
    """The call's deadline passed before an answer arrived."""


class APIError(ClientError):
    """The service answered and refused the call."""


class BadRequest(APIError):
    """400: malformed JSON, or a seed 002/003 validation error."""

    http_status = 400


class AuthenticationError(APIError):
    """401: missing, malformed, unknown or revoked token."""

    http_status = 401


class PaymentRequired(APIError):
    """402: the prepaid balance cannot pay for the whole batch; nothing was charged."""

    http_status = 402


class PermissionDenied(APIError):
    """403: the token lacks the scope, or names an organisation not its user's."""

    http_status = 403


class NotFound(APIError):
    """404: unknown id, or one owned by another organisation."""

    http_status = 404


class Conflict(APIError):
    """409: the request conflicts with the current state."""

    http_status = 409


class IdempotencyConflict(Conflict):
    """409: a request with the same Idempotency-Key is still in flight."""


class UnprocessableEntity(APIError):
    """422: the request is well-formed JSON but not acceptable."""

    http_status = 422


class RateLimited(APIError):
    """429: a rate limit or the monthly quota is exhausted."""

    http_status = 429

    @property
    def retry_after(self) -> float | None:
        """Seconds the service asked to wait (`retry-after`), when it said."""
        return _seconds(self.metadata.get(RETRY_AFTER_KEY))


class ServerError(APIError):
    """500, or a status the client does not know."""

    http_status = 500


_BY_HTTP: dict[int, type[ClientError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: UnprocessableEntity,
    422: UnprocessableEntity,
    429: RateLimited,
    503: ServiceUnavailable,
}

# What intake means by each code (see intake/wire_errors.py); used when no HTTP status came.
_BY_GRPC: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: UnprocessableEntity,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.FAILED_PRECONDITION: PaymentRequired,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def translate(error: grpc.aio.AioRpcError) -> ClientError:
    """The client error for a failed call: the one place gRPC errors are read."""
    metadata = {
        **metadata_dict(error.trailing_metadata() or ()),
        **metadata_dict(error.initial_metadata() or ()),
    }
    http_status = _int(metadata.get(HTTP_STATUS_KEY))
    body = _json_object(metadata.get(ERROR_BODY_KEY))
    code, message = _code_and_message(body)
    cls = _class_for(http_status, error.code())
    if issubclass(cls, Conflict) and _in_flight(code, metadata):
        # Seed 003's radar bodies carry no machine code; the in-flight conflict is the
        # only 409 that asks the caller to come back (`retry-after`).
        cls = IdempotencyConflict
    return cls(
        message or error.details() or error.code().name.lower(),
        grpc_code=error.code(),
        http_status=http_status,
        code=code,
        body=body,
        metadata=metadata,
        retryable=cls in (ServiceUnavailable, IdempotencyConflict),
    )


def metadata_dict(metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    """Text metadata as a dict (first value of each key); binary values are skipped."""
    found: dict[str, str] = {}
    for key, value in metadata:
        if isinstance(value, str):
            found.setdefault(key.lower(), value)
    return found


def retry_delay(error: ClientError) -> float | None:
    """The wait the service asked for before a retry, when it asked."""
    return _seconds(error.metadata.get(RETRY_AFTER_KEY))


def _class_for(http_status: int | None, grpc_code: grpc.StatusCode) -> type[ClientError]:
    if http_status is not None:
        if http_status in _BY_HTTP:
            return _BY_HTTP[http_status]
        return ServerError if http_status >= 500 else APIError
    return _BY_GRPC.get(grpc_code, ServerError)


def _code_and_message(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Each family's error shape: `{"error", "code"}` (default), `{"error": CODE,
    "message"}` (seed 002), `{"code": <status>, "message", "errors"}` (seed 003)."""
    code, error, message = body.get("code"), body.get("error"), body.get("message")
    if isinstance(code, str):
        return code.lower(), _text(error) or _text(message)
    if code is None and isinstance(error, str) and isinstance(message, str):
        return error.lower(), message
    return None, _text(message) or _text(error)


def _in_flight(code: str | None, metadata: Mapping[str, str]) -> bool:
    return code == IDEMPOTENCY_CONFLICT or (code is None and RETRY_AFTER_KEY in metadata)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _json_object(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}

"""The one error hierarchy of batchplane's request path.

    BatchplaneError                 code, message, http_status, retryable, extra
    ├── Unauthenticated             401  unauthorized
    ├── MissingOrganization         400  organization_missing
    ├── PermissionDenied            403  insufficient_scope
    ├── NotFound                    404  not_found
    ├── InvalidRequest              422  (or 400 for malformed JSON) invalid_request, …
    ├── PaymentRequired             402  insufficient_credits
    ├── Conflict                    409  conflict, idempotency_conflict, …
    ├── RateLimited                 429  rate_limited, quota_exceeded
    └── Unavailable                 503  unavailable          (retryable)

Domain code raises these; `batchplane.intake.wire_errors` translates them into
a gRPC status plus the HTTP status and JSON body the gateway sends, in exactly
one place. Retryability is a field, not implied by the class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class BatchplaneError(Exception):
    """Base of every error a client can be told about."""

    default_code: ClassVar[str] = "internal"
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retryable: bool = False,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if http_status is not None:
            self.http_status = http_status
        self.retryable = retryable
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})


class Unauthenticated(BatchplaneError):
    """No token, or a token that is malformed, unknown or revoked."""

    default_code = "unauthorized"
    http_status = 401


class MissingOrganization(BatchplaneError):
    """The token is bound to no organisation and none was named."""

    default_code = "organization_missing"
    http_status = 400


class PermissionDenied(BatchplaneError):
    """The token lacks the scope the route needs."""

    default_code = "insufficient_scope"
    http_status = 403


class NotFound(BatchplaneError):
    """Unknown id, or one owned by another organisation (never 403)."""

    default_code = "not_found"
    http_status = 404


class InvalidRequest(BatchplaneError):
    """The request body or parameters are unacceptable."""

    default_code = "invalid_request"
    http_status = 422


class PaymentRequired(BatchplaneError):
    """The prepaid balance cannot pay for the whole batch."""

    default_code = "insufficient_credits"
    http_status = 402


class Conflict(BatchplaneError):
    """The request conflicts with the current state."""

    default_code = "conflict"
    http_status = 409


class RateLimited(BatchplaneError):
    """A rate limit or the monthly quota is exhausted."""

    default_code = "rate_limited"
    http_status = 429


class Unavailable(BatchplaneError):
    """A dependency (database, broker) is briefly unreachable; retry later."""

    default_code = "unavailable"
    http_status = 503

    def __init__(self, message: str = "service temporarily unavailable", **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)

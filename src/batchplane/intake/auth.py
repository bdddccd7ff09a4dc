"""Authentication and authorisation of one call, from its metadata.

Tokens arrive as `authorization: Bearer <token>` or `x-api-key: <token>`
(HTTP headers become lower-case gRPC metadata at the gateway; internal gRPC
callers send the same keys). The organisation is the token's own, or for a
token bound to none, `x-organization-id`, which must be one of the user's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.errors import MissingOrganization, PermissionDenied, Unauthenticated
from batchplane.db import tenancy
from batchplane.db.engine import Database

Metadata = Iterable[tuple[str, str | bytes]]


@dataclass(frozen=True)
class Caller:
    """Who is calling, for which organisation, with which scopes, on which plan."""

    user_id: str
    org_id: str
    token_id: str
    scopes: frozenset[str]
    plan: str = "free"


def metadata_value(metadata: Metadata, key: str) -> str | None:
    for name, value in metadata:
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


def token_from_metadata(metadata: Metadata) -> str | None:
    """The presented token, or None when absent or malformed."""
    authorization = metadata_value(metadata, "authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token and " " not in token else None
    api_key = metadata_value(metadata, "x-api-key")
    return api_key.strip() or None if api_key is not None else None


class Authenticator:
    """Resolves metadata to a `Caller`, or raises 401 / 400 / 403."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def authenticate(self, metadata: Metadata) -> Caller:
        """The caller behind the metadata's token; raises 401, or 400/403 for the org."""
        secret = token_from_metadata(metadata)
        if secret is None:
            raise Unauthenticated("missing or malformed API token")
        async with self._database.read() as session:
            token = await tenancy.find_token(session, secret=secret)
            if token is None:
                raise Unauthenticated("invalid API token")
            org_id, plan = token.org_id, token.org_plan
            if org_id is None:
                org_id = await self._organization_from_header(session, metadata, token.user_id)
                org = await tenancy.get_organization(session, org_id=org_id)
                plan = None if org is None else org.plan
            if plan is None:
                raise Unauthenticated("the token's organization no longer exists")
        return Caller(
            user_id=token.user_id,
            org_id=org_id,
            token_id=token.token_id,
            scopes=token.scopes,
            plan=plan,
        )

    async def _organization_from_header(
        self, session: AsyncSession, metadata: Metadata, user_id: str
    ) -> str:
        org_id = (metadata_value(metadata, "x-organization-id") or "").strip()
        if not org_id:
            raise MissingOrganization("Organization ID is missing")
        if not await tenancy.is_member(session, user_id=user_id, org_id=org_id):
            # The same answer for an unknown organisation and another tenant's:
            # never confirm that an id exists.
            raise PermissionDenied(
                "this token cannot act for that organization", code="organization_forbidden"
            )
        return org_id

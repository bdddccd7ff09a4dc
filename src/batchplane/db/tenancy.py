"""Organisations, users, memberships and API tokens (owner of those tables)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.ids import hash_token, new_id, new_token
from batchplane.db.models import ApiToken, Membership, Organization, User


@dataclass(frozen=True)
class TokenRecord:
    """What authentication needs to know about a presented token."""

    token_id: str
    user_id: str
    org_id: str | None
    scopes: frozenset[str]
    # The plan of the organisation the token is bound to, read with the token (one
    # query per request instead of two); None for an unbound token, or when its
    # organisation no longer exists.
    org_plan: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    secret: str
    scopes: tuple[str, ...]


async def create_organization(
    session: AsyncSession, *, name: str, plan: str, now: datetime
) -> Organization:
    org = Organization(id=new_id("org"), name=name, plan=plan, credit_balance=0, created_at=now)
    session.add(org)
    await session.flush()
    return org


async def create_user(session: AsyncSession, *, name: str, now: datetime) -> User:
    user = User(id=new_id("user"), name=name, created_at=now)
    session.add(user)
    await session.flush()
    return user


async def add_membership(
    session: AsyncSession, *, user_id: str, org_id: str, role: str = "member"
) -> None:
    session.add(Membership(user_id=user_id, org_id=org_id, role=role))
    await session.flush()


async def get_organization(session: AsyncSession, *, org_id: str) -> Organization | None:
    return await session.get(Organization, org_id)


async def first_member(session: AsyncSession, *, org_id: str) -> str | None:
    """The first user of an organisation (the owner created with it)."""
    stmt = select(Membership.user_id).where(Membership.org_id == org_id).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def is_member(session: AsyncSession, *, user_id: str, org_id: str) -> bool:
    return await session.get(Membership, (user_id, org_id)) is not None


async def issue_token(
    session: AsyncSession,
    *,
    user_id: str,
    org_id: str | None,
    scopes: tuple[str, ...],
    now: datetime,
) -> IssuedToken:
    """Create a token; the secret is returned once and only its hash is stored."""
    secret = new_token()
    token = ApiToken(
        id=new_id("tok"),
        token_hash=hash_token(secret),
        user_id=user_id,
        org_id=org_id,
        scopes=" ".join(scopes),
        created_at=now,
        revoked_at=None,
    )
    session.add(token)
    await session.flush()
    return IssuedToken(token_id=token.id, secret=secret, scopes=scopes)


async def find_token(session: AsyncSession, *, secret: str) -> TokenRecord | None:
    """The live token whose hash matches `secret`, with its organisation's plan, or None."""
    digest = hash_token(secret)
    stmt = (
        select(
            ApiToken.id,
            ApiToken.user_id,
            ApiToken.org_id,
            ApiToken.scopes,
            ApiToken.token_hash,
            ApiToken.revoked_at,
            Organization.plan,
        )
        .outerjoin(Organization, Organization.id == ApiToken.org_id)
        .where(ApiToken.token_hash == digest)
    )
    row = (await session.execute(stmt)).one_or_none()
    # The index finds the row; the constant-time comparison keeps the check
    # itself free of timing differences.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return TokenRecord(
        token_id=row.id,
        user_id=row.user_id,
        org_id=row.org_id,
        scopes=frozenset(row.scopes.split()),
        org_plan=row.plan,
    )


async def revoke_token(session: AsyncSession, *, token_id: str, now: datetime) -> bool:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def set_plan(session: AsyncSession, *, org_id: str, plan: str) -> str | None:
    """Move the organisation to `plan`; returns the plan it had, or None if it is unknown."""
    org = await session.get(Organization, org_id, with_for_update=True)
    if org is None:
        return None
    previous = org.plan
    org.plan = plan
    return previous


async def tokens_of(session: AsyncSession, *, org_id: str) -> list[ApiToken]:
    """Tokens usable for the organisation: bound to it, or unbound tokens of its members."""
    stmt = (
        select(ApiToken)
        .join(Membership, Membership.user_id == ApiToken.user_id)
        .where(
            Membership.org_id == org_id,
            or_(ApiToken.org_id == org_id, ApiToken.org_id.is_(None)),
        )
        .order_by(ApiToken.created_at, ApiToken.id)
    )
    return list((await session.execute(stmt)).scalars())

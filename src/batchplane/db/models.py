"""Tables, in SQLAlchemy 2 typed style. Each table has one owning module:

organizations, users, memberships, api_tokens   batchplane.db.tenancy
credit_ledger, usage_monthly                    batchplane.db.billing
batches, batch_items                            batchplane.db.batches
domain_lookups, domain_lists, list_domains      batchplane.db.lookups
outbox                                          batchplane.db.outbox
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table(model: type[Base]) -> Table:
    """The Core table of a mapped class, typed as such (mypy sees a FromClause)."""
    return cast(Table, model.__table__)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(40))
    # Kept equal to the sum of the ledger in the same transaction as each entry;
    # a conditional UPDATE keeps it from going negative under concurrency.
    credit_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(40), default="member")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    # None: the token may act for any organisation of its user (X-Organization-Id).
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    scopes: Mapped[str] = mapped_column(Text)  # space separated
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class CreditEntry(Base):
    """Append-only ledger: top-ups (+), charges (-) and refunds (+)."""

    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class UsageMonthly(Base):
    """Usage units metered per organisation per calendar month (UTC)."""

    __tablename__ = "usage_monthly"

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-11"
    units: Mapped[int] = mapped_column(BigInteger, default=0)


class Batch(Base):
    __tablename__ = "batches"

    # int32 on the wire: the seeds print batch ids as JSON numbers.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    family: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    requested_count: Mapped[int] = mapped_column(Integer)
    processed_count: Mapped[int] = mapped_column(Integer, default=0)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    credits_charged: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class BatchItem(Base):
    """One item; (batch_id, item_index) is its identity everywhere."""

    __tablename__ = "batch_items"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    item_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    input: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(60))
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class DomainLookup(Base):
    """The latest successful lookup of each domain, shared by all organisations."""

    __tablename__ = "domain_lookups"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    technologies: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    looked_up_at: Mapped[datetime] = mapped_column(Timestamp)


class DomainList(Base):
    __tablename__ = "domain_lists"

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    list_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class ListDomain(Base):
    __tablename__ = "list_domains"

    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    list_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(Timestamp)


class OutboxMessage(Base):
    """A Kafka record written in the same transaction as the state it announces."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(Timestamp)

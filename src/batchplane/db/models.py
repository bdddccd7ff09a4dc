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
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    # Items cancelled before they started; also counted in processed_count.
    cancelled_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    credits_charged: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The batch whose failed items this one retries.
    retry_of: Mapped[int | None] = mapped_column(Integer)
    # When the requeue sweeper last published the work records of its stale items again.
    requeued_at: Mapped[datetime | None] = mapped_column(Timestamp)


class BatchItem(Base):
    """One item; (batch_id, item_index) is its identity everywhere."""

    __tablename__ = "batch_items"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    item_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    input: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(60))
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Set by handlers whose items are long enough to show "processing" (scrape jobs).
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # When a processor took the item to work on it; a cancel spares claimed items.
    claimed_at: Mapped[datetime | None] = mapped_column(Timestamp)
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
    """A Kafka record written in the same transaction as the state it announces, one
    row per record: how releases before `outbox_packs` queued records. Nothing writes
    it any more; the relays still drain it, so that records queued by an older release
    still running during an upgrade are published. A later release can drop it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    # Kafka headers to send with it (the W3C trace context), or NULL for none.
    headers: Mapped[dict[str, str] | None] = mapped_column(Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class OutboxPack(Base):
    """The Kafka records one transaction queued with the state they announce: one row
    per transaction (a serialized `batchplane.api.outbox.v1.OutboxPack`), so that a
    chunk's 500 item events cost one row written and deleted, not 500.

    A table of its own rather than a new column of `outbox`: a relay of an older
    release, which reads `outbox` only, can never publish a pack as if it were a record.
    """

    __tablename__ = "outbox_packs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    records: Mapped[bytes] = mapped_column(LargeBinary)
    # How many records `records` holds (the backlog gauge, without decoding).
    record_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class IdempotencyKey(Base):
    """A client's Idempotency-Key and the response it produced (24 h by default)."""

    __tablename__ = "idempotency_keys"

    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # "in_flight" while the first request runs, then "completed".
    state: Mapped[str] = mapped_column(String(20))
    response: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class Signal(Base):
    """A change detected about a domain: technology added/removed, radar detections.

    `org_id` is None for platform-wide facts (a public site's technologies) and set
    for what an organisation's own radars found.
    """

    __tablename__ = "signals"
    __table_args__ = (Index("ix_signals_domain_detected_at", "domain", "detected_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(253))
    org_id: Mapped[str | None] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    detected_at: Mapped[datetime] = mapped_column(Timestamp)


class Enrichment(Base):
    """One enrichment of one field of one entity for an organisation (seed 002's object)."""

    __tablename__ = "enrichments"
    __table_args__ = (
        Index("ix_enrichments_org_entity_field", "org_id", "entity_id", "field"),
        Index("ix_enrichments_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(36))
    entity_type: Mapped[str] = mapped_column(String(20))
    field: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    data_found: Mapped[bool | None] = mapped_column(Boolean)
    data: Mapped[Any] = mapped_column(Json, nullable=True)
    created_by: Mapped[str] = mapped_column(String(40))
    global_enrichment_id: Mapped[str | None] = mapped_column(String(60))
    credit_transaction_id: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Entity(Base):
    """A company (keyed by its domain) or a person (keyed by a profile URL), shared by all
    organisations and registered the first time anyone names it."""

    __tablename__ = "entities"
    __table_args__ = (UniqueConstraint("type", "key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class GlobalEnrichment(Base):
    """The latest crawl result of one field of one entity, reused by every organisation
    within the freshness window."""

    __tablename__ = "global_enrichments"
    __table_args__ = (UniqueConstraint("entity_id", "field"),)

    id: Mapped[str] = mapped_column(String(60), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(36))
    field: Mapped[str] = mapped_column(String(40))
    data_found: Mapped[bool] = mapped_column(Boolean)
    data: Mapped[Any] = mapped_column(Json, nullable=True)
    fetched_at: Mapped[datetime] = mapped_column(Timestamp)


class WebhookSecret(Base):
    """An organisation's webhook signing secrets. A rotated-out secret keeps signing
    until `retired_at`, so receivers can switch over without dropping deliveries."""

    __tablename__ = "webhook_secrets"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    retired_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WebhookDelivery(Base):
    """One webhook message to one URL; its id is the stable `webhook-id`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_batch", "batch_id", "kind", "status"),
        Index("ix_webhook_deliveries_org_created", "org_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(60), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    batch_id: Mapped[int] = mapped_column(Integer)
    # "item" or "completion": a completion waits for the batch's item messages.
    kind: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # pending → delivered | failed | dead (retries exhausted) | disabled (410)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The W3C context the delivery was queued in (the notifier's span of its event),
    # parent of every attempt's span; NULL when not tracing.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(Json, nullable=True)


class WebhookAttempt(Base):
    """Every delivery attempt, kept for the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(60), index=True)
    attempted_at: Mapped[datetime] = mapped_column(Timestamp)
    verdict: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_snippet: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)


class DisabledEndpoint(Base):
    """A webhook URL that answered 410 Gone: nothing more is sent to it."""

    __tablename__ = "disabled_endpoints"

    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    disabled_at: Mapped[datetime] = mapped_column(Timestamp)


class Radar(Base):
    """A live radar of an organisation (seed 003). Only one active radar per
    configuration (`identity`) and organisation."""

    __tablename__ = "radars"
    __table_args__ = (Index("ix_radars_org_identity_status", "org_id", "identity", "status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    radar_type: Mapped[str] = mapped_column(String(40))
    identity: Mapped[str] = mapped_column(String(2400))
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    # "active" or "inactive".
    status: Mapped[str] = mapped_column(String(20))
    credit_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    deactivated_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_checked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # What the last check saw, to compare the next one with (contact: the profile
    # page's snapshot; industry: feed entries already reported). None until then.
    state: Mapped[dict[str, Any] | None] = mapped_column(Json)

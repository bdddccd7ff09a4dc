"""Credits ledger and usage metering (owner of credit_ledger and usage_monthly).

The balance on `organizations` changes only here, in the same transaction as
the ledger entry that explains it, through conditional UPDATEs that cannot make
it negative whatever the concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.dialect import increment, increment_within, is_postgresql
from batchplane.db.models import CreditEntry, Organization, UsageMonthly, table

TOPUP = "topup"
CHARGE = "charge"
REFUND = "refund"


@dataclass(frozen=True)
class LedgerLine:
    kind: str
    amount: int
    balance_after: int
    batch_id: int | None
    note: str
    created_at: datetime


async def charge(
    session: AsyncSession,
    *,
    org_id: str,
    amount: int,
    batch_id: int | None,
    now: datetime,
    note: str = "",
) -> int | None:
    """Take `amount` credits; the ledger entry's id, or None when it cannot be paid.

    The organisation's row stays locked until the transaction ends, so callers
    charge last, just before committing.
    """
    if is_postgresql(session):
        # One round trip: the conditional UPDATE and the ledger INSERT fed by it.
        entry = await session.execute(_charge_and_record(org_id, amount, batch_id, note, now))
        found = entry.scalar_one_or_none()
        return None if found is None else int(found)
    result = await session.execute(
        update(Organization)
        .where(Organization.id == org_id, Organization.credit_balance >= amount)
        .values(credit_balance=Organization.credit_balance - amount)
        .returning(Organization.credit_balance)
    )
    balance = result.scalar_one_or_none()
    if balance is None:
        return None
    return await _append(session, org_id, CHARGE, -amount, balance, batch_id, note, now)


def _charge_and_record(
    org_id: str, amount: int, batch_id: int | None, note: str, now: datetime
) -> Any:
    """WITH paid AS (UPDATE … RETURNING balance) INSERT INTO credit_ledger … FROM paid:
    no row from `paid` (balance too low) means no entry and no id back."""
    orgs, ledger = table(Organization), table(CreditEntry)
    paid = (
        update(orgs)
        .where(orgs.c.id == org_id, orgs.c.credit_balance >= amount)
        .values(credit_balance=orgs.c.credit_balance - amount)
        .returning(orgs.c.credit_balance)
        .cte("paid")
    )
    entry = select(
        literal(org_id, ledger.c.org_id.type),
        literal(CHARGE, ledger.c.kind.type),
        literal(-amount, ledger.c.amount.type),
        paid.c.credit_balance,
        literal(batch_id, ledger.c.batch_id.type),
        literal(note, ledger.c.note.type),
        literal(now, ledger.c.created_at.type),
    )
    columns = ["org_id", "kind", "amount", "balance_after", "batch_id", "note", "created_at"]
    return insert(ledger).from_select(columns, entry).returning(ledger.c.id)


async def credit(
    session: AsyncSession,
    *,
    org_id: str,
    amount: int,
    kind: str,
    batch_id: int | None,
    now: datetime,
    note: str = "",
) -> int:
    """Add credits (a top-up or a refund); returns the new balance."""
    result = await session.execute(
        update(Organization)
        .where(Organization.id == org_id)
        .values(credit_balance=Organization.credit_balance + amount)
        .returning(Organization.credit_balance)
    )
    balance = int(result.scalar_one())
    await _append(session, org_id, kind, amount, balance, batch_id, note, now)
    return balance


async def _append(
    session: AsyncSession,
    org_id: str,
    kind: str,
    amount: int,
    balance: int,
    batch_id: int | None,
    note: str,
    now: datetime,
) -> int:
    """Write one ledger entry; its id. A Core INSERT … RETURNING: no ORM object and
    flush for a row nobody reads back in this transaction."""
    ledger = table(CreditEntry)
    stmt = (
        insert(ledger)
        .values(
            org_id=org_id,
            kind=kind,
            amount=amount,
            balance_after=balance,
            batch_id=batch_id,
            note=note,
            created_at=now,
        )
        .returning(ledger.c.id)
    )
    return int((await session.execute(stmt)).scalar_one())


async def ledger(session: AsyncSession, *, org_id: str, limit: int = 50) -> list[LedgerLine]:
    rows = (
        await session.execute(
            select(CreditEntry)
            .where(CreditEntry.org_id == org_id)
            .order_by(CreditEntry.id.desc())
            .limit(limit)
        )
    ).scalars()
    return [
        LedgerLine(r.kind, r.amount, r.balance_after, r.batch_id, r.note, r.created_at)
        for r in rows
    ]


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


async def meter(session: AsyncSession, *, org_id: str, units: int, now: datetime) -> None:
    """Add usage units to the organisation's current month (UTC)."""
    await increment(
        session,
        table(UsageMonthly),
        key={"org_id": org_id, "month": month_of(now)},
        column="units",
        amount=units,
    )


async def meter_within_quota(
    session: AsyncSession, *, org_id: str, units: int, quota: int, now: datetime
) -> bool:
    """Add usage units unless the month's total would pass `quota`; False when refused."""
    total = await increment_within(
        session,
        table(UsageMonthly),
        key={"org_id": org_id, "month": month_of(now)},
        column="units",
        amount=units,
        ceiling=quota,
    )
    return total is not None


async def usage(session: AsyncSession, *, org_id: str, month: str) -> int:
    row = await session.get(UsageMonthly, (org_id, month))
    return int(row.units) if row else 0

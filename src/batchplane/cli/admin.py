"""`batchplane admin …`: operator commands against DATABASE_URL (the embedded
SQLite database when unset). Each prints one JSON object."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from batchplane.core.clock import SystemClock, rfc3339
from batchplane.core.plans import DEFAULT_PLANS
from batchplane.core.scopes import ALL_SCOPES
from batchplane.core.settings import Settings
from batchplane.db import billing, tenancy, webhooks
from batchplane.db.engine import Database
from batchplane.db.migrate import upgrade_async
from batchplane.notifier.delivery import new_secret


class AdminError(Exception):
    """A command that cannot be carried out; printed as {"error": …}, exit 2."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = commands.add_parser("admin", help="manage organisations, tokens and credits")
    sub = admin.add_subparsers(dest="admin_command", required=True)
    org = sub.add_parser("create-org", help="create an organisation, its owner and a token")
    org.add_argument("--name", required=True)
    org.add_argument("--plan", default="free", help=f"one of {', '.join(DEFAULT_PLANS)} by default")
    org.add_argument("--credits", type=int, default=0)
    org.add_argument("--scopes", default=",".join(ALL_SCOPES), help="comma separated")
    token = sub.add_parser("create-token", help="issue a token for an organisation")
    token.add_argument("--org", required=True)
    token.add_argument("--scopes", default=",".join(ALL_SCOPES), help="comma separated")
    token.add_argument(
        "--unbound",
        action="store_true",
        help="not bound to the org: callers send X-Organization-Id",
    )
    show = sub.add_parser("show-org", help="plan, credit balance, usage and recent ledger")
    show.add_argument("org_id")
    secret = sub.add_parser(
        "webhook-secret", help="show (creating one if needed) or rotate the webhook signing secret"
    )
    secret.add_argument("org_id")
    secret.add_argument("--rotate", action="store_true")
    credits = sub.add_parser("add-credits", help="top up an organisation's balance")
    credits.add_argument("org_id")
    credits.add_argument("amount", type=int)


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise AdminError(f"unknown scope {unknown[0]!r}; known: {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise AdminError("at least one scope is needed")
    return scopes


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    await upgrade_async(settings.effective_database_url)
    database = Database(settings.effective_database_url, pool_size=1)
    try:
        command = args.admin_command
        if command == "create-org":
            return await create_org(
                database, args.name, args.plan, args.credits, _scopes(args.scopes)
            )
        if command == "create-token":
            return await create_token(
                database, args.org, _scopes(args.scopes), bound=not args.unbound
            )
        if command == "show-org":
            return await show_org(database, args.org_id, settings)
        if command == "webhook-secret":
            return await webhook_secret(database, args.org_id, settings, rotate=args.rotate)
        if command == "add-credits":
            return await add_credits(database, args.org_id, args.amount)
        raise AdminError(f"unknown command {command}")
    finally:
        await database.dispose()


async def create_org(
    database: Database, name: str, plan: str, credits: int, scopes: tuple[str, ...]
) -> dict[str, Any]:
    if credits < 0:
        raise AdminError("--credits cannot be negative")
    now = SystemClock().now()
    async with database.transaction() as session:
        org = await tenancy.create_organization(session, name=name, plan=plan, now=now)
        user = await tenancy.create_user(session, name=f"{name} owner", now=now)
        await tenancy.add_membership(session, user_id=user.id, org_id=org.id, role="owner")
        if credits:
            await billing.credit(
                session,
                org_id=org.id,
                amount=credits,
                kind=billing.TOPUP,
                batch_id=None,
                now=now,
                note="initial credits",
            )
        token = await tenancy.issue_token(
            session, user_id=user.id, org_id=org.id, scopes=scopes, now=now
        )
    return {
        "org_id": org.id,
        "user_id": user.id,
        "name": name,
        "plan": plan,
        "credit_balance": credits,
        "token": token.secret,
        "token_id": token.token_id,
        "scopes": list(scopes),
    }


async def create_token(
    database: Database, org_id: str, scopes: tuple[str, ...], *, bound: bool
) -> dict[str, Any]:
    now = SystemClock().now()
    async with database.transaction() as session:
        user_id = await tenancy.first_member(session, org_id=org_id)
        if user_id is None:
            raise AdminError(f"organization {org_id} not found")
        token = await tenancy.issue_token(
            session, user_id=user_id, org_id=org_id if bound else None, scopes=scopes, now=now
        )
    return {
        "token": token.secret,
        "token_id": token.token_id,
        "scopes": list(scopes),
        "user_id": user_id,
    }


async def show_org(database: Database, org_id: str, settings: Settings) -> dict[str, Any]:
    now = SystemClock().now()
    async with database.transaction() as session:
        org = await tenancy.get_organization(session, org_id=org_id)
        if org is None:
            raise AdminError(f"organization {org_id} not found")
        month = billing.month_of(now)
        units = await billing.usage(session, org_id=org_id, month=month)
        lines = await billing.ledger(session, org_id=org_id, limit=20)
    plan = settings.plans.get(org.plan)
    return {
        "org_id": org.id,
        "name": org.name,
        "plan": org.plan,
        "credit_balance": org.credit_balance,
        "usage": {
            "month": month,
            "units": units,
            "quota": plan.monthly_units if plan else None,
        },
        "ledger": [
            {
                "kind": line.kind,
                "amount": line.amount,
                "balance_after": line.balance_after,
                "batch_id": line.batch_id,
                "note": line.note,
                "created_at": rfc3339(line.created_at),
            }
            for line in lines
        ],
    }


async def add_credits(database: Database, org_id: str, amount: int) -> dict[str, Any]:
    if amount <= 0:
        raise AdminError("amount must be a positive integer")
    now = SystemClock().now()
    async with database.transaction() as session:
        if await tenancy.get_organization(session, org_id=org_id) is None:
            raise AdminError(f"organization {org_id} not found")
        balance = await billing.credit(
            session,
            org_id=org_id,
            amount=amount,
            kind=billing.TOPUP,
            batch_id=None,
            now=now,
            note="top-up",
        )
    return {"org_id": org_id, "added": amount, "credit_balance": balance}


async def webhook_secret(
    database: Database, org_id: str, settings: Settings, *, rotate: bool
) -> dict[str, Any]:
    """The secrets receivers verify with; after a rotation the old one signs for a while."""
    now = SystemClock().now()
    async with database.transaction() as session:
        if await tenancy.get_organization(session, org_id=org_id) is None:
            raise AdminError(f"organization {org_id} not found")
        if rotate:
            await webhooks.rotate_secret(
                session,
                org_id=org_id,
                secret=new_secret(),
                now=now,
                overlap=timedelta(seconds=settings.webhooks.secret_overlap_s),
            )
        secrets = await webhooks.signing_secrets(session, org_id=org_id, now=now, create=new_secret)
    return {"org_id": org_id, "secret": secrets[0], "also_signing": secrets[1:]}

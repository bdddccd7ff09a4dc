"""`batchplane admin …`: operator commands against DATABASE_URL (the embedded
SQLite database when unset). Each prints one JSON object.

Organisations and tokens: create-org, create-token, show-org (with its tokens),
add-credits, set-plan, revoke-token, webhook-secret. Batches: list-batches,
inspect-batch, retry-failed. Webhooks: replay-webhooks sends dead-lettered
deliveries again. Work: replay-dead-letters publishes the processor's dead
letters again (the broker only; no database).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from aiokafka.errors import KafkaError

from batchplane.bus import dead_letters
from batchplane.core.clock import SystemClock, rfc3339
from batchplane.core.errors import BatchplaneError
from batchplane.core.plans import DEFAULT_PLANS, Plan
from batchplane.core.scopes import ALL_SCOPES
from batchplane.core.settings import Settings
from batchplane.core.states import BatchState
from batchplane.db import batches, billing, tenancy, webhooks
from batchplane.db.engine import Database
from batchplane.db.migrate import upgrade_async
from batchplane.db.models import ApiToken, Batch
from batchplane.intake.auth import Caller
from batchplane.intake.batch_control import BatchControl
from batchplane.intake.enrichments import FAMILY as ENRICHMENT_FAMILY
from batchplane.intake.enrichments import EnrichmentBatchHooks
from batchplane.notifier.delivery import new_secret

# Stands for the token of calls the operator makes for an organisation; only the
# rate limiter keys on it, and the CLI goes through none.
OPERATOR = "admin-cli"
REPLAY_DEAD_LETTERS_HELP = (
    "publish the processor's dead-lettered work records again, each to the topic it came "
    "from (the work topic when it does not say), under the consumer group "
    f"{dead_letters.REPLAY_GROUP}. Offsets are committed only after the broker has the "
    "records again, so a run that dies midway loses nothing and the next run may publish "
    "some records twice: a replayed item may be looked at twice (the processor is "
    "idempotent per item). A record still unprocessable comes back to the dead-letter "
    "topic for a later run."
)


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
    plan = sub.add_parser("set-plan", help="move an organisation to another plan")
    plan.add_argument("org_id")
    plan.add_argument("plan")
    revoke = sub.add_parser("revoke-token", help="revoke a token at once (its id, not its secret)")
    revoke.add_argument("token_id")
    listing = sub.add_parser("list-batches", help="the newest batches, optionally filtered")
    listing.add_argument("--org", default=None)
    listing.add_argument("--status", default=None, choices=[s.value for s in BatchState])
    listing.add_argument("--family", default=None)
    listing.add_argument("--limit", type=int, default=20)
    inspect = sub.add_parser("inspect-batch", help="a batch, its items and its webhooks")
    inspect.add_argument("batch_id", type=int)
    inspect.add_argument("--items", type=int, default=100, help="items to show (default 100)")
    replay = sub.add_parser(
        "replay-webhooks", help="send dead-lettered webhook deliveries again, with the same ids"
    )
    scope = replay.add_mutually_exclusive_group(required=True)
    scope.add_argument("--org", default=None)
    scope.add_argument("--batch", type=int, default=None)
    scope.add_argument("--all", action="store_true", help="every dead delivery")
    replay.add_argument("--limit", type=int, default=1000)
    retry = sub.add_parser(
        "retry-failed",
        help="a new batch of a batch's failed items, charged to its organisation "
        "(as RetryFailedItems)",
    )
    retry.add_argument("batch_id", type=int)
    dead = sub.add_parser(
        "replay-dead-letters",
        help="publish dead-lettered work records again (an item may be looked at twice)",
        description=REPLAY_DEAD_LETTERS_HELP,
    )
    dead.add_argument("--limit", type=int, default=1000, help="records at most (default 1000)")
    dead.add_argument(
        "--partition",
        type=int,
        action="append",
        default=[],
        dest="partitions",
        metavar="P",
        help="only this partition of the dead-letter topic (repeatable; default all)",
    )


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise AdminError(f"unknown scope {unknown[0]!r}; known: {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise AdminError("at least one scope is needed")
    return scopes


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.admin_command == "replay-dead-letters":
        # The broker only: no database to migrate or open.
        return await replay_dead_letters(settings, limit=args.limit, partitions=args.partitions)
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
        if command == "set-plan":
            return await set_plan(database, args.org_id, args.plan, settings)
        if command == "revoke-token":
            return await revoke_token(database, args.token_id)
        if command == "list-batches":
            return await list_batches(
                database, org_id=args.org, status=args.status, family=args.family, limit=args.limit
            )
        if command == "inspect-batch":
            return await inspect_batch(database, args.batch_id, items=args.items)
        if command == "replay-webhooks":
            return await replay_webhooks(
                database, org_id=args.org, batch_id=args.batch, limit=args.limit
            )
        if command == "retry-failed":
            return await retry_failed(database, args.batch_id, settings)
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
        tokens = await tenancy.tokens_of(session, org_id=org_id)
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
        "tokens": [_token_json(token) for token in tokens],
    }


def _token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "token_id": token.id,
        "user_id": token.user_id,
        "bound": token.org_id is not None,
        "scopes": token.scopes.split(),
        "created_at": rfc3339(token.created_at),
        "revoked_at": rfc3339(token.revoked_at) if token.revoked_at else None,
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


async def set_plan(
    database: Database, org_id: str, plan: str, settings: Settings
) -> dict[str, Any]:
    """Limits and quota follow at the organisation's next call: they are read per call."""
    if plan not in settings.plans:
        raise AdminError(f"unknown plan {plan!r}; known: {', '.join(settings.plans)}")
    async with database.transaction() as session:
        previous = await tenancy.set_plan(session, org_id=org_id, plan=plan)
    if previous is None:
        raise AdminError(f"organization {org_id} not found")
    return {"org_id": org_id, "plan": plan, "previous_plan": previous}


async def revoke_token(database: Database, token_id: str) -> dict[str, Any]:
    """Effective at once: every call looks its token up."""
    async with database.transaction() as session:
        revoked = await tenancy.revoke_token(session, token_id=token_id, now=SystemClock().now())
    if not revoked:
        raise AdminError(f"token {token_id} not found or already revoked")
    return {"token_id": token_id, "revoked": True}


async def list_batches(
    database: Database,
    *,
    org_id: str | None,
    status: str | None,
    family: str | None,
    limit: int,
) -> dict[str, Any]:
    if not 1 <= limit <= 1000:
        raise AdminError("--limit must be between 1 and 1000")
    async with database.transaction() as session:
        found = await batches.list_batches(
            session, org_id=org_id, status=status, family=family, limit=limit
        )
    return {"batches": [_batch_json(batch) for batch in found]}


async def inspect_batch(database: Database, batch_id: int, *, items: int) -> dict[str, Any]:
    if items < 0:
        raise AdminError("--items cannot be negative")
    async with database.transaction() as session:
        batch = await batches.find_batch(session, batch_id=batch_id)
        if batch is None:
            raise AdminError(f"batch {batch_id} not found")
        rows = await batches.list_items(session, batch_id=batch_id)
        deliveries = await webhooks.status_counts(session, batch_id=batch_id)
    return {
        **_batch_json(batch),
        "params": batch.params,
        "items": [
            {
                "item_index": row.item_index,
                "input": row.input,
                "status": row.status,
                "error": row.error_code,
            }
            for row in rows[:items]
        ],
        "items_shown": min(items, len(rows)),
        "webhooks": deliveries,
    }


async def replay_webhooks(
    database: Database, *, org_id: str | None, batch_id: int | None, limit: int
) -> dict[str, Any]:
    """Dead deliveries become pending again with a fresh retry schedule and the same id,
    so receivers still de-duplicate them."""
    if not 1 <= limit <= 10_000:
        raise AdminError("--limit must be between 1 and 10000")
    now = SystemClock().now()
    async with database.transaction() as session:
        dead = await webhooks.dead_deliveries(
            session, org_id=org_id, batch_id=batch_id, limit=limit
        )
        for delivery in dead:
            await webhooks.redeliver(
                session, org_id=delivery.org_id, delivery_id=delivery.id, now=now
            )
    return {"replayed": [delivery.id for delivery in dead], "count": len(dead)}


async def retry_failed(database: Database, batch_id: int, settings: Settings) -> dict[str, Any]:
    """The RetryFailedItems of the batch's own organisation, through the same
    `BatchControl`: metered and charged like any batch, linked by `retry_of`, and
    queued through the outbox, which intake's relay publishes."""
    async with database.transaction() as session:
        batch = await batches.find_batch(session, batch_id=batch_id)
        org = (
            None if batch is None else await tenancy.get_organization(session, org_id=batch.org_id)
        )
    if batch is None or org is None:
        raise AdminError(f"batch {batch_id} not found")
    control = BatchControl(
        database,
        kafka=settings.kafka,
        clock=SystemClock(),
        hooks={ENRICHMENT_FAMILY: EnrichmentBatchHooks()},  # as intake's BatchService
    )
    # Acting for the organisation: its plan's quota, and the original batch's creator
    # as the creator of the retry (an operator is no member of it).
    caller = Caller(
        user_id=batch.created_by,
        org_id=batch.org_id,
        token_id=OPERATOR,
        scopes=frozenset(ALL_SCOPES),
        plan=org.plan,
    )
    try:
        retried = await control.retry_failed(caller, _plan(settings, org.plan), batch_id)
    except BatchplaneError as error:
        raise AdminError(f"{error.message} ({error.code})") from error
    return {**_batch_json(retried), "item_count": retried.requested_count}


def _plan(settings: Settings, name: str) -> Plan:
    # Intake's guard applies the free plan to an organisation whose plan is not
    # configured; the retry must be metered exactly as the RPC would meter it.
    return settings.plans.get(name) or settings.plans.get("free", DEFAULT_PLANS["free"])


async def replay_dead_letters(
    settings: Settings, *, limit: int, partitions: list[int]
) -> dict[str, Any]:
    if not 1 <= limit <= 100_000:
        raise AdminError("--limit must be between 1 and 100000")
    try:
        replayed = await dead_letters.replay_dead_letters(
            settings.kafka, limit=limit, partitions=partitions
        )
    except (dead_letters.UnknownPartition, dead_letters.ReplayStalled) as error:
        raise AdminError(str(error)) from error
    except KafkaError as error:
        # Whatever was published and not yet committed is published again next run.
        raise AdminError(f"broker error: {error}") from error
    return {
        "dead_letter_topic": settings.kafka.dead_letter_topic,
        "replayed": replayed.count,
        "by_topic": replayed.by_topic,
    }


def _batch_json(batch: Batch) -> dict[str, Any]:
    def moment(value: Any) -> str | None:
        return rfc3339(value) if value is not None else None

    return {
        "batch_id": batch.id,
        "org_id": batch.org_id,
        "family": batch.family,
        "status": batch.status,
        "progress": {
            "requested": batch.requested_count,
            "processed": batch.processed_count,
            "succeeded": batch.success_count,
            "failed": batch.error_count,
            "cancelled": batch.cancelled_count,
        },
        "credits_charged": batch.credits_charged,
        "credits_refunded": batch.credits_refunded,
        "retry_of": batch.retry_of,
        "created_at": moment(batch.created_at),
        "started_at": moment(batch.started_at),
        "finished_at": moment(batch.finished_at),
    }

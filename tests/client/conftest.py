"""The client against the real stack (`stack` fixture): organisations, balances, clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.support.stack import RunningStack

from batchplane.client import BatchplaneClient, RetryPolicy

# Retries fast enough for tests, as many as the default policy.
FAST_RETRIES = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)

NewOrg = Callable[..., dict[str, Any]]
Balance = Callable[[dict[str, Any]], int]
ClientFor = Callable[..., contextlib.AbstractAsyncContextManager[BatchplaneClient]]


@pytest.fixture
def intake_target(stack: RunningStack) -> str:
    return f"127.0.0.1:{stack.ports['intake']}"


@pytest.fixture
def new_org(stack: RunningStack) -> NewOrg:
    """`new_org(credits=…, plan=…)`: a fresh organisation and its all-scopes token."""

    def create(*, credits: int = 1000, plan: str = "pro") -> dict[str, Any]:
        return stack.cli(
            "admin", "create-org", "--name", "client", "--plan", plan, "--credits", str(credits)
        )

    return create


@pytest.fixture
def balance(stack: RunningStack) -> Balance:
    def read(org: dict[str, Any]) -> int:
        return int(stack.cli("admin", "show-org", org["org_id"])["credit_balance"])

    return read


@pytest.fixture
def client_for(intake_target: str) -> ClientFor:
    """`async with client_for(org) as client:` a client of intake with the org's token
    (`target=` another address, e.g. a proxy's; other keywords go to the client)."""

    @contextlib.asynccontextmanager
    async def open_client(
        org: dict[str, Any], *, target: str | None = None, **options: Any
    ) -> AsyncIterator[BatchplaneClient]:
        options.setdefault("retry", FAST_RETRIES)
        options.setdefault("timeout_s", 60.0)
        async with BatchplaneClient(
            target or intake_target, token=org["token"], **options
        ) as client:
            yield client

    return open_client

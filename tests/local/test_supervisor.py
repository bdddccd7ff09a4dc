"""The supervision of `batchplane run` (`local/stack.py`), with real child processes that
stand in for the services: restarts with a new pid, giving up on a crash loop, and a
clean stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from batchplane.core.settings import Settings
from batchplane.local.stack import RestartPolicy, Stack

FAST = RestartPolicy(max_exits=5, window_s=60, first_backoff_s=0.05, max_backoff_s=0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    running = Stack(Settings(state_dir=tmp_path), os.environ, FAST)
    try:
        yield running
    finally:
        await running.stop(timeout_s=5)


def _pid_file(stack: Stack, name: str) -> int | None:
    try:
        return int(stack.pid_file(name).read_text())
    except FileNotFoundError:
        return None


async def _until_pid_changes(stack: Stack, name: str, old: int, timeout_s: float = 10) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = _pid_file(stack, name)
        if pid is not None and pid != old:
            return pid
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} was not restarted within {timeout_s}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_killed_child_is_restarted_with_a_new_pid(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchplane.stack")
    child = await stack.spawn("sleeper", "sleep", "60")
    first = child.process
    assert _pid_file(stack, "sleeper") == first.pid

    os.kill(first.pid, signal.SIGKILL)
    new_pid = await _until_pid_changes(stack, "sleeper", first.pid)

    assert await first.wait() == -signal.SIGKILL
    assert child.process.pid == new_pid
    assert child.process.returncode is None
    assert _alive(new_pid)
    assert child.restarts == 1
    assert not stack.failed.is_set()
    assert any("sleeper exited with -9; restarting it" in r.getMessage() for r in caplog.records), (
        caplog.text
    )


async def test_a_clean_exit_is_restarted_too(stack: Stack) -> None:
    child = await stack.spawn("sleeper", "sleep", "60")
    first = child.process.pid

    os.kill(first, signal.SIGTERM)

    assert await _until_pid_changes(stack, "sleeper", first) == child.process.pid
    assert not stack.failed.is_set()


async def test_a_child_that_keeps_exiting_is_given_up(tmp_path: Path) -> None:
    policy = RestartPolicy(max_exits=3, window_s=60, first_backoff_s=0.01, max_backoff_s=0.05)
    stack = Stack(Settings(state_dir=tmp_path), os.environ, policy)
    try:
        child = await stack.spawn("crasher", "sh", "-c", "exit 3")
        await asyncio.wait_for(stack.failed.wait(), 10)

        assert stack.failure == "crasher exited 3 times within 60s (last with 3); giving up"
        assert child.restarts == 2
        assert child.process.returncode == 3
        await asyncio.sleep(0.2)
        assert child.restarts == 2  # nothing restarts it once given up
    finally:
        await stack.stop(timeout_s=5)


async def test_exits_further_apart_than_the_window_never_add_up(tmp_path: Path) -> None:
    # Each run lasts 0.5 s, longer than the window: at most one exit is ever recent.
    policy = RestartPolicy(max_exits=2, window_s=0.3, first_backoff_s=0.01, max_backoff_s=0.01)
    stack = Stack(Settings(state_dir=tmp_path), os.environ, policy)
    try:
        child = await stack.spawn("flaky", "sh", "-c", "sleep 0.5; exit 1")
        deadline = time.monotonic() + 20
        while child.restarts < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert child.restarts >= 3
        assert not stack.failed.is_set(), stack.failure
    finally:
        await stack.stop(timeout_s=5)


async def test_a_child_that_is_not_restarted_fails_the_stack_when_it_exits(stack: Stack) -> None:
    child = await stack.spawn("broker", "sh", "-c", "exit 0", restart=False)

    await asyncio.wait_for(stack.failed.wait(), 10)

    assert stack.failure == "broker exited with 0 and is not restarted"
    assert child.restarts == 0


async def test_stopping_ends_every_child_without_restarting_and_removes_pid_files(
    stack: Stack,
) -> None:
    children = [await stack.spawn(name, "sleep", "60") for name in ("one", "two")]
    pids = [c.process.pid for c in children]

    await stack.stop(timeout_s=5)

    for child, pid in zip(children, pids, strict=True):
        assert child.process.returncode == -signal.SIGTERM
        assert child.process.pid == pid
        assert child.restarts == 0
        assert not stack.pid_file(child.name).exists()
    assert not stack.failed.is_set()


def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_backoff_s=0.5, max_backoff_s=5)
    assert [policy.backoff_s(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]

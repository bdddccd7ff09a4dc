"""`batchplane admin` on the embedded default database (DATABASE_URL unset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent / "batchplane"


def _admin(state_dir: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["BATCHPLANE_STATE_DIR"] = str(state_dir)
    done = subprocess.run(
        [str(BIN), "admin", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == expect, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def test_organisation_lifecycle_on_the_embedded_database(tmp_path: Path) -> None:
    created = _admin(tmp_path, "create-org", "--name", "acme", "--plan", "pro", "--credits", "1000")

    assert {"org_id", "user_id", "token", "scopes"} <= set(created)
    assert created["org_id"].startswith("org_")
    assert created["user_id"].startswith("user_")
    assert "lookup.write" in created["scopes"]
    assert (tmp_path / "batchplane.db").exists()

    token = _admin(
        tmp_path,
        "create-token",
        "--org",
        created["org_id"],
        "--scopes",
        "lookup.write,signals.read",
    )
    assert token["scopes"] == ["lookup.write", "signals.read"]
    assert token["token"] != created["token"]

    topped = _admin(tmp_path, "add-credits", created["org_id"], "250")
    assert topped["credit_balance"] == 1250

    shown = _admin(tmp_path, "show-org", created["org_id"])
    assert (shown["plan"], shown["credit_balance"]) == ("pro", 1250)
    assert shown["usage"]["units"] == 0
    assert [line["kind"] for line in shown["ledger"]] == ["topup", "topup"]


def test_errors_are_json_with_a_nonzero_exit(tmp_path: Path) -> None:
    assert "error" in _admin(tmp_path, "show-org", "org_missing", expect=2)
    assert "error" in _admin(tmp_path, "create-token", "--org", "org_missing", expect=2)
    created = _admin(tmp_path, "create-org", "--name", "x")
    assert (
        "unknown scope"
        in _admin(
            tmp_path, "create-token", "--org", created["org_id"], "--scopes", "nope", expect=2
        )["error"]
    )

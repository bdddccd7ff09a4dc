"""Public identifiers and token secrets."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "bp_"  # noqa: S105 - a prefix, not a secret


def new_id(prefix: str) -> str:
    """A random, URL-safe id such as `org_3kT9…` (96 bits of entropy)."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def new_token() -> str:
    """A new API token secret (256 bits), shown once and stored only hashed."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 of a token; tokens have full entropy, so no salt or KDF is needed."""
    return hashlib.sha256(token.encode()).hexdigest()

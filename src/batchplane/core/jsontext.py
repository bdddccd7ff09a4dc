"""JSON text of values that may hold what orjson refuses.

orjson is the fast path everywhere, but results come from outside: a scraped page's
JSON-LD can hold integers beyond 64 bits, which orjson refuses (the standard library
writes them exactly and reads them back exactly), and results built by handlers can
have keys that are not strings. Those go through the standard library's `json`, in the
same compact form, rather than failing a chunk or a response.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """UTF-8 JSON; keys that are not strings become strings, as `json` makes them."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, say
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_text(value: Any) -> str:
    """`dumps` as a str."""
    return dumps(value).decode()

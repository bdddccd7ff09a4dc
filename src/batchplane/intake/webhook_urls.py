"""Which `webhook_url`s a client may give: https, or http to an operator-allowed host."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from batchplane.core.errors import InvalidRequest
from batchplane.notifier.delivery import validate_webhook_url


class WebhookUrlPolicy:
    """Checks `webhook_url` fields the same way for every batch route."""

    def __init__(self, allow_http_hosts: Iterable[str], allow_networks: Iterable[str]) -> None:
        self._hosts = frozenset(allow_http_hosts)
        self._networks = tuple(allow_networks)

    def check(self, value: Any) -> str | None:
        """The URL, None when absent; raises InvalidRequest (422) naming the field."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidRequest("webhook_url must be a string")
        problem = validate_webhook_url(value, self._hosts, self._networks)
        if problem is not None:
            raise InvalidRequest(problem)
        return value

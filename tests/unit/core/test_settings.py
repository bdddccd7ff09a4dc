"""Webhook lease settings: read from the environment, and refused when an attempt could
outlive its lease."""

from __future__ import annotations

import pytest

from batchplane.core.settings import Settings, SettingsError


def test_the_webhook_lease_defaults_to_a_minute_and_can_be_set() -> None:
    assert Settings.from_env({}).webhooks.lease_s == 60
    env = {"BATCHPLANE_WEBHOOK_TIMEOUT_S": "2", "BATCHPLANE_WEBHOOK_LEASE_S": "5"}
    assert Settings.from_env(env).webhooks.lease_s == 5


@pytest.mark.parametrize("lease", ["15", "10"])
def test_a_lease_no_longer_than_the_webhook_timeout_is_refused(lease: str) -> None:
    env = {"BATCHPLANE_WEBHOOK_TIMEOUT_S": "15", "BATCHPLANE_WEBHOOK_LEASE_S": lease}
    with pytest.raises(SettingsError, match="BATCHPLANE_WEBHOOK_LEASE_S must be longer"):
        Settings.from_env(env)

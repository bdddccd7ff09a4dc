"""Which environment variables `Settings.from_env` reads: deployment files may set no other."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from batchplane.core.settings import Settings


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return default


def names_settings_reads() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.read

"""Shards: slice i of n of a workload, for replicas that split one configuration.

`score --shard i/n` takes the inputs whose position modulo n is i (round-robin over a
sorted list); `serve --shard i/n` takes the configured streams whose stable hash of the
stream id modulo n is i, so N replicas of one config cover every stream exactly once and
a stream keeps its replica when others are added to the list.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from monitor.errors import ConfigError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Slice `index` of `count`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard {self.index}/{self.count} is out of range: need 0 <= i < n, e.g. 0/4"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = _SHARD.match(text)
        if not m:
            raise ConfigError(f"shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
        return cls(int(m.group(1)), int(m.group(2)))

    def takes_position(self, position: int) -> bool:
        return position % self.count == self.index

    def takes_name(self, name: str) -> bool:
        """Stable across processes, machines and Python versions (not `hash()`)."""
        return stable_hash(name) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def stable_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")

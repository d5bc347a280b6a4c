"""The contract every target implements (local now; ssh and kubernetes later)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from deployer.events import EventBus
from deployer.planner import Observed, Plan


@dataclass(frozen=True)
class Endpoint:
    """Where an OpenAI-compatible server answers, and how to authenticate to it."""

    base_url: str  # ends in /v1
    health_url: str
    api_key: str | None


class Target(Protocol):
    kind: str

    def observe(self, name: str) -> Observed:
        """Facts about ``name`` right now; a deployment that does not exist is not running."""
        ...

    def deploy(self, plan: Plan, events: EventBus, api_key: str) -> None:
        """Start the engine as planned, replacing a running one; returns once started."""
        ...

    def wait_ready(self, plan: Plan, events: EventBus, timeout: float) -> None:
        """Block until the engine answers its health check; raise EngineStartError otherwise."""
        ...

    def endpoint(self, name: str) -> Endpoint:
        """How to reach ``name``; raises NotFoundError when it is not deployed."""
        ...

    def destroy(self, name: str, events: EventBus) -> bool:
        """Stop and remove ``name``. Idempotent: returns False when there was nothing to remove."""
        ...

    def logs(self, name: str, lines: int, follow: bool) -> Iterator[str]:
        """The engine's log: the last ``lines`` lines, then new ones while ``follow``."""
        ...

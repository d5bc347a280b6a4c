"""Persisted state: deployments, their runs, steps and events (see :mod:`deployer.state.store`).

The records and statuses import without SQLAlchemy; :class:`StateStore` loads it on first use,
so ``import deployer.state`` stays cheap for code that only renders records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer.state.records import (
    AuditRecord,
    BenchRecord,
    DeploymentRecord,
    DeploymentStatus,
    EngineSample,
    EventData,
    EventRecord,
    RevisionRecord,
    Role,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    TokenRecord,
)

if TYPE_CHECKING:
    from deployer.state.store import StateStore

__all__ = [
    "AuditRecord",
    "BenchRecord",
    "DeploymentRecord",
    "DeploymentStatus",
    "EngineSample",
    "EventData",
    "EventRecord",
    "RevisionRecord",
    "Role",
    "RunRecord",
    "RunStatus",
    "StateStore",
    "StepRecord",
    "StepStatus",
    "TokenRecord",
]


def __getattr__(name: str) -> object:
    if name == "StateStore":
        from deployer.state.store import StateStore

        return StateStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

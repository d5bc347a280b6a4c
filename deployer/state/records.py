"""What the state store persists: statuses and frozen records.

Plain data with no database in sight, so the CLI and the dashboard can import these without
paying for SQLAlchemy. Every datetime is timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

#: Small scalar facts attached to an event (the same shape as :attr:`deployer.events.Event.data`).
EventData = dict[str, str | int | float | bool | None]


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    DEPLOYING = "deploying"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"
    DESTROYED = "destroyed"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


class StepStatus(StrEnum):
    RUNNING = "running"
    SKIPPED = "skipped"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self is not StepStatus.RUNNING


@dataclass(frozen=True)
class DeploymentRecord:
    name: str
    target_kind: str
    status: DeploymentStatus
    manifest_path: str | None
    manifest_digest: str | None
    #: Hash of what the engine runs (argv, image, weights): a change means a redeploy.
    spec_digest: str | None
    endpoint: str | None
    served_model_name: str | None
    message: str | None
    created_at: datetime
    updated_at: datetime
    #: The most recent run started for this deployment (set by ``StateStore.start_run``).
    last_run_id: int | None
    #: The target as applied (see ``deployments.target_spec``); None for older records.
    target_spec: dict[str, object] | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    deployment: str
    #: "apply", "destroy" or "smoke".
    operation: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    #: The deployer process that ran it, on ``host``.
    pid: int
    host: str
    #: That process's start time (``psutil.Process.create_time``, epoch seconds): with ``pid`` it
    #: names the process even after the pid is reused. None for runs recorded before it was.
    process_created: float | None = None


@dataclass(frozen=True)
class StepRecord:
    id: int
    run_id: int
    name: str
    #: "create", "update", "skip", "delete" or "check".
    action: str
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None
    message: str | None


@dataclass(frozen=True)
class EventRecord:
    id: int
    run_id: int
    ts: datetime
    #: An :class:`deployer.events.EventKind` value.
    kind: str
    step: str | None
    message: str
    data: EventData
    #: For progress events: units done and total (None when unknown).
    completed: float | None = None
    total: float | None = None


class Role(StrEnum):
    """What a server token may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class TokenRecord:
    """A server token as stored: never the token itself, only its hash and first characters."""

    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    """One action through the server: who, what, on what, when, and how it ended."""

    id: int
    ts: datetime
    actor: str
    action: str
    target: str | None
    result: str
    detail: str | None


#: The sample fields that add up across a deployment's endpoints at one scrape (loads); the
#: others (KV cache use, latency quantiles) combine as the worst endpoint's, the largest.
ADDITIVE_SAMPLE_FIELDS = ("running", "waiting", "tokens_per_second")


@dataclass(frozen=True)
class EngineSample:
    """One scrape of one endpoint's engine: its measured values by name (None: not measured),
    or why the scrape failed."""

    deployment: str
    endpoint: str
    ts: datetime
    values: dict[str, float | None]
    error: str | None = None


@dataclass(frozen=True)
class RevisionRecord:
    """A deployment's manifest document and lock as one apply applied them."""

    deployment: str
    number: int
    applied_at: datetime
    run_id: int | None
    manifest_path: str
    manifest_digest: str
    manifest_text: str
    lock_text: str | None


@dataclass(frozen=True)
class BenchRecord:
    """One ``deployer bench`` result as stored: the revision it measured and the result itself
    (``deployer.bench.results.BenchResult`` as JSON; the state does not read inside it)."""

    id: int
    deployment: str
    run_id: int | None
    manifest_digest: str
    model_revision: str | None
    #: "complete" or "partial".
    status: str
    tool: str
    started_at: datetime
    finished_at: datetime
    result: dict[str, object]

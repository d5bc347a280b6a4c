"""The contract every target implements: local, ssh and kubernetes, and any added later.

A target is where a deployment runs. The API facade never asks which one it has: it builds
the driver from the registry (:mod:`deployer.targets.registry`), asks it for the steps it adds
to a plan (:meth:`Target.plan_steps`, plain data), and the plan executor carries out the plan's
steps by name through :meth:`Target.step_runners` and the common methods below. Abilities only
some targets have are small mixins (:class:`Provisions`, :class:`Renders`, :class:`Diffs`),
checked with ``isinstance`` against the mixin, never against a driver class.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

from deployer.events import EventBus
from deployer.hub.lock import LockedModel
from deployer.manifest.models import ModelDeployment
from deployer.planner import Observed, Plan, TargetSteps
from deployer.planner.plan import Placement

#: HTTP statuses of an engine's health path that mean "up": 200, and 401 from a health path the
#: engine guards with its key (llama.cpp's /v1/models: up, and enforcing the key).
ANSWERING = frozenset({200, 401})
#: ``lines`` for :meth:`Target.logs`: the whole log, from its first line.
WHOLE_LOG = -1


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the health URL ``url`` answers with a status in :data:`ANSWERING`; False when
    nothing answers in ``timeout`` seconds. The standard library's client: an unchanged apply
    asks this once, and importing httpx for it would cost it a tenth of a second."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    connection = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else "") or "/")
        return connection.getresponse().status in ANSWERING
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


@dataclass(frozen=True)
class Endpoint:
    """Where an OpenAI-compatible server answers, and how to authenticate to it."""

    base_url: str  # ends in /v1
    health_url: str
    api_key: str | None


@dataclass(frozen=True)
class DeployRequest:
    """What a target needs to carry out a plan: the plan, the manifest it came from, the key
    and the events to report on. Secrets here are registered with :mod:`deployer.secrets`."""

    deployment: ModelDeployment
    plan: Plan
    api_key: str
    events: EventBus
    #: The hub token for a target whose hosts fetch the model themselves (a cluster's pods).
    hub_token: str | None = None
    lock: LockedModel | None = None

    @property
    def name(self) -> str:
        return self.deployment.name


#: A target's own step: runs it and returns a value the executor may keep (or None).
StepRunner = Callable[[DeployRequest], object]


@dataclass(frozen=True)
class Change:
    """One difference between what a manifest asks for and what runs."""

    what: str
    detail: str

    def describe(self) -> str:
        return f"{self.what}: {self.detail}"


@runtime_checkable
class Target(Protocol):
    """A place deployments run. Every method may block; none prints."""

    kind: ClassVar[str]
    #: Whether observing needs no network (the local target reads its own files), so an
    #: offline plan observes it too.
    observes_offline: ClassVar[bool]

    def spec_record(self) -> dict[str, Any]:
        """The resolved target spec as data (paths absolute), kept in the state so ``status``,
        ``logs`` and ``destroy`` reach the deployment without its manifest."""
        ...

    def preflight(self) -> None:
        """Raise when the target cannot be reached at all (a cluster's API), before an apply
        records anything."""
        ...

    def observe(self, name: str) -> Observed:
        """Facts about ``name`` right now; one that does not exist is not running. An
        unreachable place is a detail of the result or a one-line DeployerError (``status``
        shows either)."""
        ...

    def placement(self, accelerator: str) -> Placement:
        """The device and accelerator a manifest asking for ``accelerator`` runs on here."""
        ...

    def default_port(self, name: str, host: str) -> int:
        """The engine's port when the manifest names none (and nothing runs yet)."""
        ...

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        """The steps this target adds to a plan and how it runs the common ones. ``offline``
        (``deployer plan``): from what is recorded, without contacting hosts or clusters."""
        ...

    def step_runners(self) -> Mapping[str, StepRunner]:
        """How to run the steps :meth:`plan_steps` added, by step name."""
        ...

    def deploy(self, request: DeployRequest) -> None:
        """Start the engine as planned, replacing a running one; returns once started."""
        ...

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        """Block until every replica answers its health check; raise EngineStartError or
        HealthTimeoutError otherwise."""
        ...

    def smoke_endpoints(
        self, name: str, plan: Plan | None = None
    ) -> AbstractContextManager[list[str]]:
        """The base URLs to smoke-check from this machine while the context is open (as
        ``plan`` says, else as what runs): the local engine, each ssh replica, a port-forward
        to a cluster's Service."""
        ...

    def endpoint(self, name: str) -> Endpoint:
        """How to reach ``name``; raises NotFoundError when it is not deployed."""
        ...

    def destroy(self, name: str, events: EventBus) -> bool:
        """Stop and remove ``name``. Idempotent: returns False when there was nothing to remove."""
        ...

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        """The engine's log: the last ``lines`` lines (:data:`WHOLE_LOG`: all of them) of
        ``host``'s replica, or of every one prefixed with its host, then new ones while
        ``follow``. Raises UnsupportedError for what the target cannot do."""
        ...


@runtime_checkable
class Provisions(Protocol):
    """A target whose hosts deployer prepares (drivers, engine, facts) before deploying."""

    def unprovisioned(self) -> list[str]:
        """The hosts that were never provisioned."""
        ...

    def provision(self, hosts: list[str], events: EventBus) -> None:
        """Provision ``hosts``, recording their facts; raises the first failing host's error."""
        ...


@runtime_checkable
class Renders(Protocol):
    """A target whose deployments are artifacts rendered from the plan (Kubernetes objects)."""

    def render(self, request: DeployRequest) -> Any:
        """The artifacts for ``request``, validated; raises PlanError for what cannot run."""
        ...


@runtime_checkable
class Surges(Protocol):
    """A target that rolls a changed engine out beside the serving one (``Plan.rollout``
    surges): its deploy starts the new engine on a second private port, ``ready`` and the
    smoke checks go to that engine, and its ``switch`` step moves the published endpoint."""

    def abandon(self, name: str, events: EventBus) -> None:
        """Stop the new engine of a surge that failed its gate; the serving engine keeps
        serving, untouched. Idempotent: nothing to stop is not an error."""
        ...


@runtime_checkable
class RollsBack(Protocol):
    """A target whose deploy replaces the serving revision in place and keeps the one before
    (Kubernetes: Helm's release history): a changed deployment that fails its smoke checks
    after the deploy goes back to it."""

    def roll_back(self, name: str, events: EventBus) -> str:
        """Serve the revision before this apply's again and wait for it; returns what serves
        now, for people ("helm revision 3"). Raises EngineStartError when it cannot."""
        ...


@runtime_checkable
class Diffs(Protocol):
    """A target that can say what an apply would change, field by field."""

    def diff(self, request: DeployRequest) -> list[Change]:
        """What differs between ``request`` and what runs (empty: nothing would change)."""
        ...

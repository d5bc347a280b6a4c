"""A target that keeps revisions (the seam the Kubernetes target implements with Helm's release
history): an upgrade that deploys but then fails its smoke checks goes back to the revision
before, and the record names it. In memory: no Kubernetes API server can run on these machines,
so ``helm rollback`` itself is not run here; its argv is tested in tests/unit/targets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from deployer import api
from deployer.errors import RolledBackError, SmokeFailedError
from deployer.events import EventBus
from deployer.manifest.models import ModelDeployment
from deployer.planner import Observed, Plan, PlannedStep, StepAction, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator
from deployer.state import DeploymentStatus
from deployer.targets import registry
from deployer.targets.base import DeployRequest, Endpoint, RollsBack, StepRunner, Surges
from tests.unit.targets.test_contract import tiny_model

GiB = 1024**3


class ReleasingFake:
    """In memory: a release whose revisions are the spec digests deployed, newest last."""

    kind: ClassVar[str] = "fake"
    observes_offline: ClassVar[bool] = True
    revisions: ClassVar[list[str]] = []
    calls: ClassVar[list[str]] = []

    @classmethod
    def from_spec(cls, spec: Any, settings: Settings, base_dir: Path) -> ReleasingFake:
        return cls()

    def spec_record(self) -> dict[str, Any]:
        return {"kind": "local"}

    def preflight(self) -> None:
        pass

    def observe(self, name: str) -> Observed:
        if not self.revisions:
            return Observed(running=False)
        return Observed(running=True, healthy=True, spec_digest=self.revisions[-1])

    def placement(self, accelerator: str) -> Placement:
        return Placement("cpu", cpu_accelerator(64 * GiB))

    def default_port(self, name: str, host: str) -> int:
        return 8011

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        return TargetSteps(
            engine=PlannedStep(name="engine", action=StepAction.SKIP, reason="the fake's own"),
            ready="the fake is ready",
        )

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {}

    def deploy(self, request: DeployRequest) -> None:
        self.calls.append("deploy")
        self.revisions.append(request.plan.engine.spec_digest)

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        self.calls.append("ready")

    def roll_back(self, name: str, events: EventBus) -> str:
        self.calls.append("roll back")
        self.revisions.append(self.revisions[-2])
        return f"revision {len(self.revisions) - 2}"

    @contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        yield ["http://127.0.0.1:9/v1"]  # nothing listens: a declared check fails

    def endpoint(self, name: str) -> Endpoint:
        return Endpoint("http://127.0.0.1:8011/v1", "http://127.0.0.1:8011/health", None)

    def destroy(self, name: str, events: EventBus) -> bool:
        self.calls.append("destroy")
        return bool(self.revisions)

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        return iter([])


@pytest.fixture(autouse=True)
def fake() -> Iterator[None]:
    registry.register("local", ReleasingFake.from_spec)
    ReleasingFake.revisions.clear()
    ReleasingFake.calls.clear()
    yield
    registry.unregister("local")


def manifest(tmp_path: Path, max_model_len: int, *, smoke: bool) -> Path:
    if not (tmp_path / "model").exists():
        tiny_model(tmp_path / "model")
    path = tmp_path / "tiny.yaml"
    checks = (
        "  smoke:\n    - chat: What is the capital of France?\n      expect: {contains: Paris}\n"
        if smoke
        else ""
    )
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        "spec:\n  model: {source: local, path: model}\n"
        f"  serving: {{maxModelLen: {max_model_len}, kvCacheMemory: 64MiB}}\n"
        "  resources: {accelerator: cpu, count: 1}\n  target: {kind: local}\n" + checks
    )
    return path


def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", cache=tmp_path / "cache")


def test_the_fake_keeps_revisions_and_does_not_surge() -> None:
    assert isinstance(ReleasingFake(), RollsBack)
    assert not isinstance(ReleasingFake(), Surges)


def test_an_upgrade_that_fails_its_smoke_checks_goes_back_to_the_revision_before(
    tmp_path: Path,
) -> None:
    first = api.apply(manifest(tmp_path, 512, smoke=False), settings(tmp_path), EventBus())
    [before] = api.status(settings(tmp_path), "tiny")
    ReleasingFake.calls.clear()

    with pytest.raises(RolledBackError) as rolled:
        api.apply(manifest(tmp_path, 256, smoke=True), settings(tmp_path), EventBus())

    assert ReleasingFake.calls == ["deploy", "ready", "roll back"]
    assert ReleasingFake.revisions[-1] == first.plan.engine.spec_digest, "the first one serves"
    assert rolled.value.message == (
        "tiny: the new engine failed its smoke gate (0/1 smoke checks passed); rolled back: "
        "revision 1 serves again"
    )
    [view] = api.status(settings(tmp_path), "tiny")
    record = view.record
    assert record.spec_digest == first.plan.engine.spec_digest
    assert record.manifest_digest == before.record.manifest_digest
    assert record.status == DeploymentStatus.HEALTHY
    assert record.message is not None
    assert "rolled back: the new engine failed its smoke gate" in record.message
    [(run, _steps), *_] = api.history(settings(tmp_path), "tiny")
    assert run.status == "failed"


def test_a_first_install_that_fails_its_smoke_checks_is_not_rolled_back(tmp_path: Path) -> None:
    with pytest.raises(SmokeFailedError):
        api.apply(manifest(tmp_path, 512, smoke=True), settings(tmp_path), EventBus())

    assert ReleasingFake.calls == ["deploy", "ready"], "nothing before it to go back to"

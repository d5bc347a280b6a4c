"""The plan executor's rollouts, driven through ``deployer.api`` by an in-memory target that
surges (the seam the local target implements with HAProxy; the real one is in
tests/integration/test_rollout.py): refused where two engines do not fit, in place with
``allow_downtime``, a surge's steps in order, and a new engine that fails to start rolled back
with the record naming the revision that still serves."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from deployer import api
from deployer.errors import EngineStartError, RolledBackError, RolloutRefusedError
from deployer.events import EventBus
from deployer.manifest.models import ModelDeployment
from deployer.planner import Observed, Plan, PlannedStep, StepAction, Surge, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator
from deployer.state import DeploymentStatus
from deployer.targets import registry
from deployer.targets.base import DeployRequest, Endpoint, StepRunner, Surges
from tests.unit.targets.test_contract import tiny_model

GiB = 1024**3


class SurgingFake:
    """In memory: a serving engine (digest, port), a new one beside it during a surge."""

    kind: ClassVar[str] = "fake"
    observes_offline: ClassVar[bool] = True
    memory: ClassVar[int] = 64 * GiB
    fail_new_engine: ClassVar[bool] = False
    serving: ClassVar[dict[str, tuple[str, int]]] = {}
    new: ClassVar[dict[str, tuple[str, int]]] = {}
    calls: ClassVar[list[str]] = []

    @classmethod
    def from_spec(cls, spec: Any, settings: Settings, base_dir: Path) -> SurgingFake:
        return cls()

    def spec_record(self) -> dict[str, Any]:
        return {"kind": "local"}

    def preflight(self) -> None:
        pass

    def observe(self, name: str) -> Observed:
        if name not in self.serving:
            return Observed(running=False)
        digest, port = self.serving[name]
        return Observed(
            running=True, healthy=True, spec_digest=digest, pid=100 + port, port=8011,
            engine_port=port,
        )  # fmt: skip

    def placement(self, accelerator: str) -> Placement:
        return Placement("cpu", cpu_accelerator(self.memory))

    def default_port(self, name: str, host: str) -> int:
        return 8011

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        current = self.serving.get(deployment.name)
        engine_port = current[1] if current else 21001
        surge = Surge(
            engine_host="127.0.0.1",
            engine_port=engine_port,
            surge_port=21002 if engine_port == 21001 else 21001,
            serving=current is not None,
        )
        proxy = PlannedStep(name="proxy", action=StepAction.SKIP, reason="the fake's proxy")
        return TargetSteps(
            engine=PlannedStep(name="engine", action=StepAction.SKIP, reason="the fake's own"),
            prepare=(proxy,),
            surge=surge,
            ready="the fake is ready",
        )

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {"proxy": lambda request: None, "switch": self._switch}

    def _switch(self, request: DeployRequest) -> None:
        self.calls.append(f"switch to {request.plan.engine.port}")
        self.serving[request.name] = self.new.pop(request.name)

    def deploy(self, request: DeployRequest) -> None:
        plan = request.plan
        surging = plan.rollout is not None and plan.rollout.surges
        self.calls.append(f"deploy {'beside' if surging else 'in place'} {plan.engine.port}")
        engine = (plan.engine.spec_digest, plan.engine.port)
        if surging:
            self.new[request.name] = engine
        else:
            self.serving[request.name] = engine

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        if request.name in self.new and self.fail_new_engine:
            raise EngineStartError("the new engine exited with code 1 before it was ready")
        self.calls.append("ready")

    def abandon(self, name: str, events: EventBus) -> None:
        self.calls.append("abandon")
        self.new.pop(name, None)

    @contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        yield ["http://127.0.0.1:9/v1"]

    def endpoint(self, name: str) -> Endpoint:
        return Endpoint("http://127.0.0.1:8011/v1", "http://127.0.0.1:8011/health", None)

    def destroy(self, name: str, events: EventBus) -> bool:
        self.calls.append("destroy")
        return self.serving.pop(name, None) is not None

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        return iter([])


@pytest.fixture(autouse=True)
def fake() -> Iterator[None]:
    registry.register("local", SurgingFake.from_spec)
    SurgingFake.memory, SurgingFake.fail_new_engine = 64 * GiB, False
    SurgingFake.serving.clear()
    SurgingFake.new.clear()
    SurgingFake.calls.clear()
    yield
    registry.unregister("local")


def manifest(tmp_path: Path, max_model_len: int) -> Path:
    if not (tmp_path / "model").exists():
        tiny_model(tmp_path / "model")
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        "spec:\n  model: {source: local, path: model}\n"
        f"  serving: {{maxModelLen: {max_model_len}, kvCacheMemory: 64MiB}}\n"
        "  resources: {accelerator: cpu, count: 1}\n  target: {kind: local}\n"
    )
    return path


def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", cache=tmp_path / "cache")


def test_a_surge_starts_beside_the_serving_engine_then_switches(tmp_path: Path) -> None:
    first = api.apply(manifest(tmp_path, 512), settings(tmp_path), EventBus())
    assert first.plan.rollout is None
    SurgingFake.calls.clear()

    result = api.apply(manifest(tmp_path, 256), settings(tmp_path), EventBus())

    assert [s.name for s in result.plan.steps][-6:] == [
        "proxy", "rollout", "deploy", "ready", "smoke", "switch",
    ]  # fmt: skip
    assert SurgingFake.calls == ["deploy beside 21002", "ready", "switch to 21002"]
    [record] = [v.record for v in api.status(settings(tmp_path), "tiny")]
    assert record.spec_digest == result.plan.engine.spec_digest
    assert record.status == DeploymentStatus.HEALTHY


def test_two_engines_that_do_not_fit_are_refused_before_anything_runs(tmp_path: Path) -> None:
    SurgingFake.memory = 2 * GiB
    api.apply(manifest(tmp_path, 512), settings(tmp_path), EventBus())
    SurgingFake.calls.clear()

    with pytest.raises(RolloutRefusedError) as refused:
        api.apply(manifest(tmp_path, 256), settings(tmp_path), EventBus())

    assert "a surge rollout of tiny does not fit: two engines of" in refused.value.message
    assert "--allow-downtime" in (refused.value.hint or "")
    assert SurgingFake.calls == []
    [(run, _steps), *_] = api.history(settings(tmp_path), "tiny")
    assert run.status == "failed"

    in_place = api.apply(
        manifest(tmp_path, 256), settings(tmp_path), EventBus(), allow_downtime=True
    )
    assert in_place.plan.rollout is not None
    assert in_place.plan.rollout.strategy == "in-place"
    assert SurgingFake.calls == ["deploy in place 21001", "ready"]


def test_plan_allow_downtime_shows_the_in_place_restart_apply_would_make(tmp_path: Path) -> None:
    SurgingFake.memory = 2 * GiB
    api.apply(manifest(tmp_path, 512), settings(tmp_path), EventBus())
    SurgingFake.calls.clear()

    refused = api.plan(manifest(tmp_path, 256), settings(tmp_path))
    in_place = api.plan(manifest(tmp_path, 256), settings(tmp_path), allow_downtime=True)

    assert refused.step("rollout").reason.startswith("refused: two engines of")
    assert in_place.rollout is not None
    assert in_place.rollout.strategy == "in-place"
    assert in_place.step("rollout").reason.startswith("in place (--allow-downtime: two engines")
    assert SurgingFake.calls == [], "a plan changes nothing"


def test_a_new_engine_that_fails_rolls_back_and_the_old_one_serves(tmp_path: Path) -> None:
    first = api.apply(manifest(tmp_path, 512), settings(tmp_path), EventBus())
    SurgingFake.fail_new_engine = True
    SurgingFake.calls.clear()

    with pytest.raises(RolledBackError) as rolled:
        api.apply(manifest(tmp_path, 256), settings(tmp_path), EventBus())

    assert rolled.value.message == (
        "tiny: the new engine did not become ready: the new engine exited with code 1 before "
        "it was ready; rolled back: the running engine keeps serving (pid 21101, port 21001)"
    )
    assert SurgingFake.calls == ["deploy beside 21002", "abandon"]
    assert SurgingFake.serving["tiny"] == (first.plan.engine.spec_digest, 21001)
    [view] = api.status(settings(tmp_path), "tiny")
    assert view.record.spec_digest == first.plan.engine.spec_digest, "the record: what serves"
    assert view.record.status == DeploymentStatus.HEALTHY
    assert f"still serving manifest {str(view.record.manifest_digest)[:12]}" in (
        view.record.message or ""
    )
    assert isinstance(SurgingFake(), Surges)

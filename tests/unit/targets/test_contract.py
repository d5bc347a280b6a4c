"""The Target contract: the same checks over every driver deployer ships and a throw-away
fourth one registered here.

The fourth target (``FakeTarget``, in memory) is a fake on purpose: it stands for a target
someone adds later, and the last tests drive ``deployer.api`` through it without any change to
the API, which is the point of the seam. The three real drivers run here without their hosts:
local on this machine; ssh with an inventory whose host refuses connections (port 1);
kubernetes with a kubeconfig whose API server refuses them (127.0.0.1:9). What needs the real
engine, hosts or a cluster is in tests/integration.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from deployer import api
from deployer.errors import DeployerError, NotFoundError, UnsupportedError
from deployer.events import EventBus
from deployer.manifest.models import ModelDeployment
from deployer.planner import Observed, Plan, PlannedStep, StepAction, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator
from deployer.state import DeploymentStatus
from deployer.targets import registry
from deployer.targets.base import DeployRequest, Endpoint, Provisions, StepRunner, Target
from tests.support.kubeapi import UNREACHABLE_KUBECONFIG


class FakeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str = "fake"


class FakeTarget:
    """A target in memory: what it deploys is a dict entry; it adds a step of its own."""

    kind: ClassVar[str] = "fake"
    observes_offline: ClassVar[bool] = True
    running: ClassVar[dict[str, str]] = {}
    calls: ClassVar[list[str]] = []

    @classmethod
    def from_spec(cls, spec: Any, settings: Settings, base_dir: Path) -> FakeTarget:
        return cls()

    def spec_record(self) -> dict[str, Any]:
        return {"kind": "local"}  # registered in place of local for the API tests

    def preflight(self) -> None:
        self.calls.append("preflight")

    def observe(self, name: str) -> Observed:
        digest = self.running.get(name)
        return Observed(running=digest is not None, healthy=digest is not None, spec_digest=digest)

    def placement(self, accelerator: str) -> Placement:
        return Placement("cpu", cpu_accelerator(8 * 1024**3))

    def default_port(self, name: str, host: str) -> int:
        return 18000

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        return TargetSteps(
            before=(PlannedStep(name="warm", action=StepAction.CHECK, reason="warm the fake"),),
            engine=PlannedStep(name="engine", action=StepAction.SKIP, reason="the fake's own"),
            ready="the fake is always ready",
        )

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {"warm": lambda request: self.calls.append(f"warm {request.name}")}

    def deploy(self, request: DeployRequest) -> None:
        self.calls.append(f"deploy {request.name}")
        self.running[request.name] = request.plan.engine.spec_digest

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        self.calls.append(f"ready {request.name}")

    @contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        yield ["http://127.0.0.1:18000/v1"]

    def endpoint(self, name: str) -> Endpoint:
        if name not in self.running:
            raise NotFoundError(f"{name} is not deployed on the fake")
        return Endpoint("http://127.0.0.1:18000/v1", "http://127.0.0.1:18000/health", None)

    def destroy(self, name: str, events: EventBus) -> bool:
        self.calls.append(f"destroy {name}")
        return self.running.pop(name, None) is not None

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        if host is not None:
            raise UnsupportedError("the fake has no hosts")
        if name not in self.running:
            raise NotFoundError(f"no log for {name}")
        return iter([f"{name} is running"])


def tiny_model(folder: Path) -> Path:
    """A model folder the local source accepts: a config, a tokenizer and one tensor."""
    folder.mkdir(parents=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "vocab_size": 256,
        "torch_dtype": "bfloat16",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    return folder


def manifest(tmp_path: Path, target: str, *, smoke: bool = False) -> Path:
    model = tiny_model(tmp_path / "model") if not (tmp_path / "model").exists() else None
    del model
    checks = (
        "  smoke:\n    - chat: What is the capital of France?\n      expect: {contains: Paris}\n"
        if smoke
        else ""
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        "spec:\n  model: {source: local, path: model}\n"
        "  resources: {accelerator: cpu, count: 1}\n"
        f"  target: {target}\n{checks}"
    )
    return path


def drivers(tmp_path: Path) -> dict[str, Target]:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "apiVersion: deployer/v1alpha1\nkind: Inventory\n"
        "hosts:\n  gpu1: {address: 127.0.0.1, port: 1, user: root}\n"
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    specs: dict[str, Any] = {
        "local": {"kind": "local"},
        "ssh": {"kind": "ssh", "inventory": str(inventory)},
        "kubernetes": {"kind": "kubernetes", "context": "prod", "namespace": "llm"},
    }
    found: dict[str, Target] = {
        kind: registry.from_record(spec, settings) for kind, spec in specs.items()
    }
    found["fake"] = FakeTarget()
    return found


KINDS = ["local", "ssh", "kubernetes", "fake"]


@pytest.fixture(autouse=True)
def _kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    FakeTarget.running.clear()
    FakeTarget.calls.clear()


@pytest.fixture
def deployment(tmp_path: Path) -> ModelDeployment:
    from deployer.manifest.loader import load_manifest

    return load_manifest(manifest(tmp_path, "{kind: local}")).deployment


@pytest.mark.parametrize("kind", KINDS)
def test_every_driver_is_a_target(tmp_path: Path, kind: str) -> None:
    target = drivers(tmp_path)[kind]
    assert isinstance(target, Target)
    assert target.kind == kind


@pytest.mark.parametrize("kind", ["local", "ssh", "kubernetes"])
def test_the_recorded_spec_rebuilds_the_same_driver(tmp_path: Path, kind: str) -> None:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    record = drivers(tmp_path)[kind].spec_record()
    again = registry.from_record(json.loads(json.dumps(record)), settings)
    assert again.kind == kind
    assert again.spec_record() == record
    for value in record.values():
        if isinstance(value, str) and "/" in value:
            assert Path(value).is_absolute(), f"{kind} records a relative path: {value}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_step_a_target_adds_has_a_runner(
    tmp_path: Path, kind: str, deployment: ModelDeployment
) -> None:
    target = drivers(tmp_path)[kind]
    steps = target.plan_steps(deployment, 8000, offline=True)
    runners = target.step_runners()
    for step in (*steps.before, *steps.prepare):
        assert step.name in runners, f"{kind} adds {step.name} but cannot run it"
        assert step.name not in ("deploy", "ready", "smoke"), "those are every target's"


@pytest.mark.parametrize("kind", KINDS)
def test_a_plan_on_every_target_ends_deploy_ready_smoke(
    tmp_path: Path, kind: str, deployment: ModelDeployment
) -> None:
    from deployer.api import facts
    from deployer.manifest.loader import load_manifest

    loaded = load_manifest(manifest(tmp_path, "{kind: local}"))
    plan = facts.make(
        loaded, drivers(tmp_path)[kind], loaded_settings(tmp_path), key=None, offline=True
    )
    names = [step.name for step in plan.steps]
    assert names[-3:] == ["deploy", "ready", "smoke"]
    assert len(names) == len(set(names)), names
    assert plan.engine.port == 8000 or kind in ("local", "fake")
    assert plan.endpoint.endswith("/v1")


def loaded_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", cache=tmp_path / "cache")


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_is_placed_on_the_cpu(tmp_path: Path, kind: str) -> None:
    placement = drivers(tmp_path)[kind].placement("cpu")
    assert placement.device == "cpu"
    assert placement.accelerator is not None
    assert placement.accelerator.vendor == "cpu"


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_deployment_is_not_running(tmp_path: Path, kind: str) -> None:
    """Observing never claims what is not there; an unreachable place is a detail (a
    cluster) or a one-line deployer error naming the host (ssh), never a crash."""
    target = drivers(tmp_path)[kind]
    if kind == "ssh":
        with pytest.raises(DeployerError, match=r"host gpu1 \(127.0.0.1\) is unreachable"):
            target.observe("nothing-here")
        return
    observed = target.observe("nothing-here")
    assert not observed.running
    assert not observed.healthy
    if kind == "kubernetes":
        assert observed.detail is not None
        assert "127.0.0.1" in observed.detail


@pytest.mark.parametrize("kind", KINDS)
def test_logs_of_a_host_only_where_there_are_hosts(tmp_path: Path, kind: str) -> None:
    target = drivers(tmp_path)[kind]
    if kind == "ssh":
        with pytest.raises(NotFoundError, match="no replica on host elsewhere"):
            list(target.logs("tiny", 10, False, host="elsewhere"))
        return
    with pytest.raises(UnsupportedError):
        list(target.logs("tiny", 10, False, host="gpu1"))


@pytest.mark.parametrize("kind", KINDS)
def test_only_targets_with_hosts_provision(tmp_path: Path, kind: str) -> None:
    assert isinstance(drivers(tmp_path)[kind], Provisions) == (kind == "ssh")


def test_an_unknown_kind_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="target kind 'moon'") as caught:
        registry.from_record({"kind": "moon"}, loaded_settings(tmp_path))
    assert "local" in (caught.value.hint or "")


# --- the API through a fourth target, without changing deployer.api -------------------------


@pytest.fixture
def fake_local() -> Iterator[None]:
    registry.register("local", FakeTarget.from_spec)
    yield
    registry.unregister("local")


def test_apply_carries_out_the_fake_targets_plan_in_order(tmp_path: Path, fake_local: None) -> None:
    settings = loaded_settings(tmp_path)
    path = manifest(tmp_path, "{kind: local}")
    planned = [step.name for step in api.plan(path, settings).steps]
    assert planned == ["warm", "model", "engine", "deploy", "ready", "smoke"]

    result = api.apply(path, settings, EventBus())

    assert result.changed
    assert FakeTarget.calls == ["preflight", "warm tiny", "deploy tiny", "ready tiny"]
    [(run, steps)] = api.history(settings, "tiny")
    assert [s.name for s in steps] == planned
    assert run.status == "succeeded"


def test_a_second_apply_through_the_fake_changes_nothing(tmp_path: Path, fake_local: None) -> None:
    settings = loaded_settings(tmp_path)
    path = manifest(tmp_path, "{kind: local}")
    api.apply(path, settings, EventBus())
    FakeTarget.calls.clear()

    again = api.apply(path, settings, EventBus())

    assert not again.changed
    assert again.plan.step("deploy").action == StepAction.SKIP
    assert "unchanged" in again.plan.step("deploy").reason
    assert FakeTarget.calls == ["preflight", "warm tiny", "ready tiny"], "no deploy"


def test_status_and_destroy_reach_the_fake_through_the_recorded_spec(
    tmp_path: Path, fake_local: None
) -> None:
    settings = loaded_settings(tmp_path)
    path = manifest(tmp_path, "{kind: local}")
    api.apply(path, settings, EventBus())
    path.unlink()  # status and destroy must not need the manifest

    [view] = api.status(settings, "tiny")
    assert view.running
    assert view.healthy
    assert list(api.logs("tiny", settings)) == ["tiny is running"]

    assert api.destroy("tiny", settings, EventBus())
    [after] = api.status(settings, "tiny")
    assert after.record.status == DeploymentStatus.DESTROYED
    assert "destroy tiny" in FakeTarget.calls

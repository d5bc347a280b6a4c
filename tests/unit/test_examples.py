"""Every example under model_manifests/ loads, and says which schema and hardware it is for."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.manifest import load_manifest, load_manifests
from deployer.manifest.models import HuggingFaceModel, LocalModel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "model_manifests"
SCHEMA = ROOT / "schema" / "model-deployment.schema.json"
FILES = sorted(p for p in EXAMPLES.rglob("*.yaml") if not p.name.endswith(".lock.yaml"))


def test_there_are_examples() -> None:
    assert {f.relative_to(EXAMPLES).as_posix() for f in FILES} >= {
        "llama31-8b-instruct.yaml",
        "mistral-7b-instruct.yaml",
        "falcon-7b-instruct.yaml",
        "bloom-7b1.yaml",
        "qwen25-7b-instruct.yaml",
        "demo/smollm2-135m.yaml",
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_example_loads_and_points_editors_at_the_schema(path: Path) -> None:
    manifest = load_manifest(path)

    first, second = path.read_text().splitlines()[:2]
    schema = Path(first.removeprefix("# yaml-language-server: $schema="))
    assert (path.parent / schema).resolve() == SCHEMA
    assert second.startswith("# "), "the second line says what the example is and where it runs"
    assert manifest.deployment.spec.smoke, "every example proves it answers"


def test_all_examples_load_together_with_unique_names() -> None:
    names = [m.deployment.name for m in load_manifests([EXAMPLES])]

    assert len(names) == len(FILES) == len(set(names))


def test_the_demo_runs_on_this_machines_cpu() -> None:
    demo = load_manifest(EXAMPLES / "demo" / "smollm2-135m.yaml")
    spec = demo.deployment.spec

    assert demo.deployment.name == "smollm2-demo"
    assert isinstance(spec.model, LocalModel)
    assert demo.resolve_path(spec.model.path) == (
        Path.home() / ".cache/deployer/demo/SmolLM2-135M-Instruct"
    )
    assert (spec.resources.accelerator, spec.target.kind) == ("cpu", "local")
    assert spec.serving.kv_cache_memory == 512 * 1024**2
    assert spec.serving.args == {"enforce-eager": True}
    (check,) = spec.smoke
    assert (check.chat, check.expect.contains) == ("What is the capital of France?", "Paris")
    assert (check.max_latency_ms, check.max_tokens) == (30000, 32)


def test_gated_repositories_take_a_token_from_the_environment() -> None:
    for name in ("llama31-8b-instruct.yaml", "mistral-7b-instruct.yaml"):
        model = load_manifest(EXAMPLES / name).deployment.spec.model
        assert isinstance(model, HuggingFaceModel)
        assert model.token is not None
        assert model.token.env == "HF_TOKEN"

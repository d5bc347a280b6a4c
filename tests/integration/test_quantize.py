"""Quantization for real: the demo model quantized by llmcompressor (int8 W8A8 and w4a16), stored,
served by vLLM's CPU build, asked the capital of France; then reused, and refused by a tight gate.

Each scheme is quantized once for the module, into a model store of its own (engines and the
quantizer are shared with the machine's cache), so "create" then "skip" is what a fresh machine
sees. The measured sizes and perplexities are printed (pytest -s shows them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.quantize.tool import quantizer_root
from deployer.settings import Settings
from tests.conftest import MANIFESTS
from tests.integration.cli import Result, deployer

pytestmark = pytest.mark.engine
INT8 = MANIFESTS / "demo" / "smollm2-135m-int8.yaml"
W4A16 = MANIFESTS / "demo" / "smollm2-135m-w4a16.yaml"
PARIS = "pass: chat: What is the capital of France?"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with the machine's engines and tools but an empty model store."""
    shared = Settings.from_env().cache
    if not (quantizer_root(Settings.from_env()) / ".deployer-tool.json").is_file():
        pytest.fail("the quantizer is not installed: run ./setup.sh (deployer quantizer install)")
    path = tmp_path_factory.mktemp("cache")
    for name in ("engines", "tools"):
        (path / name).symlink_to(shared / name)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    yield path
    for name in ("smollm2-int8", "smollm2-w4a16", "smollm2-w4a16-tight"):
        deployer("destroy", name, home=path)


def run(*args: str, home: Path, cache: Path) -> Result:
    return deployer(*args, home=home, env={"DEPLOYER_CACHE": str(cache)}, timeout=1800)


def record(manifest: Path, home: Path, cache: Path) -> dict[str, object]:
    """The stored artifact's record, through ``deployer quantize`` (which finds it in the store)."""
    result = run("quantize", str(manifest), "--output", "json", home=home, cache=cache)
    assert result.code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    assert data["created"] is False
    return data


def report(name: str, data: dict[str, object]) -> None:
    print(
        f"\n{name}: {data['artifact_bytes']:,} B from {data['source_bytes']:,} B, perplexity "
        f"{data['source_perplexity']:.3f} -> {data['quantized_perplexity']:.3f}, "
        f"quantized in {data['quantize_seconds']}s ({data['total_seconds']}s in all)"
    )


@pytest.fixture(scope="module")
def int8_apply(home: Path, cache: Path) -> Result:
    return run("apply", str(INT8), home=home, cache=cache)


@pytest.fixture(scope="module")
def w4a16_apply(home: Path, cache: Path) -> Result:
    # Requested after test_int8_destroyed (file order): one engine at a time on 2 cores.
    return run("apply", str(W4A16), home=home, cache=cache)


def test_int8_is_quantized_then_served_and_says_paris(
    int8_apply: Result, home: Path, cache: Path
) -> None:
    assert int8_apply.code == 0, int8_apply.output
    assert "quantize: create: int8 (smoothquant 0.8 + gptq)" in int8_apply.stdout
    assert "gate: check: perplexity" in int8_apply.stdout
    assert PARIS in int8_apply.stdout
    data = record(INT8, home, cache)
    report("int8", data)
    assert int(data["artifact_bytes"]) < 0.7 * int(data["source_bytes"])  # type: ignore[call-overload]
    increase = float(data["quantized_perplexity"]) / float(data["source_perplexity"]) - 1  # type: ignore[arg-type]
    assert increase < 0.10
    assert data["recipe"] == "int8 (smoothquant 0.8 + gptq)"
    assert data["versions"]["llmcompressor"] == "0.14.0"  # type: ignore[index]


def test_the_engine_serves_the_quantized_artifact(
    int8_apply: Result, home: Path, cache: Path
) -> None:
    planned = run("plan", str(INT8), "--output", "json", home=home, cache=cache)
    assert planned.code == 0, planned.output
    plan = json.loads(planned.stdout)
    model = plan["engine"]["args"][plan["engine"]["args"].index("--model") + 1]
    assert model.startswith(str(cache / "models" / "quantized"))
    config = json.loads((Path(model) / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    steps = {s["name"]: s for s in plan["steps"]}
    assert steps["quantize"]["action"] == "skip"
    assert steps["quantize"]["reason"].startswith("artifact ")
    weights = next(r for r in plan["capacity"]["memory_per_device"] if r["item"] == "weights")
    assert weights["bytes"] < 200_000_000  # the artifact's measured size, not bf16's 269 MB


def test_a_second_apply_reuses_the_artifact(int8_apply: Result, home: Path, cache: Path) -> None:
    again = run("apply", str(INT8), home=home, cache=cache)
    assert again.code == 0, again.output
    assert "quantize: skip: artifact" in again.stdout
    assert "quantize: create" not in again.stdout
    assert "deploy: skip: already running" in again.stdout
    assert len(list((cache / "models" / "quantized").glob("[0-9a-f]*"))) == 1


def test_int8_destroyed(int8_apply: Result, home: Path, cache: Path) -> None:
    assert run("destroy", "smollm2-int8", home=home, cache=cache).code == 0


def test_w4a16_is_quantized_then_served_and_says_paris(
    w4a16_apply: Result, home: Path, cache: Path
) -> None:
    assert w4a16_apply.code == 0, w4a16_apply.output
    assert "quantize: create: w4a16 (gptq, group 64)" in w4a16_apply.stdout
    assert PARIS in w4a16_apply.stdout
    data = record(W4A16, home, cache)
    report("w4a16", data)
    int8 = record(INT8, home, cache)
    assert int(data["artifact_bytes"]) < int(int8["artifact_bytes"])  # type: ignore[call-overload]
    increase = float(data["quantized_perplexity"]) / float(data["source_perplexity"]) - 1  # type: ignore[arg-type]
    assert 0 < increase < 0.30


def test_a_tight_gate_refuses_before_deploying(
    w4a16_apply: Result, home: Path, cache: Path, tmp_path: Path
) -> None:
    calibration = W4A16.parent / "calibration"
    text = (
        W4A16.read_text()
        .replace("name: smollm2-w4a16", "name: smollm2-w4a16-tight")
        .replace("maxPerplexityIncrease: 30%", "maxPerplexityIncrease: 1%")
        .replace("file: calibration/", f"file: {calibration}/")
    )
    tight = tmp_path / "tight.yaml"
    tight.write_text(text)

    refused = run("apply", str(tight), home=home, cache=cache)

    assert refused.code == 1
    assert "error: w4a16 raised perplexity " in refused.stderr
    assert "the gate allows +1% (artifact " in refused.stderr
    assert "hint: raise spec.quantize.gate.maxPerplexityIncrease" in refused.stderr
    assert "Traceback" not in refused.output
    assert "quantize: skip: artifact" in refused.stdout  # the same artifact, measured once
    assert "deploy:" not in refused.stdout
    assert not (home / "deployments" / "smollm2-w4a16-tight" / "runtime.json").exists()

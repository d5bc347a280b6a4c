"""The cache key, the artifact store and the gate: same inputs, same key; publishing is atomic."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from deployer.errors import QualityGateError
from deployer.manifest.models import QuantizeSpec
from deployer.quantize.artifact import (
    RECORD_NAME,
    ArtifactStore,
    QuantizeRecord,
    artifact_key,
    source_identity,
)
from deployer.quantize.pinned import BUILTIN_EVALUATION, ResolvedText
from deployer.quantize.recipe import build_recipe
from deployer.quantize.run import QuantizeJob, check_gate, describe_gate
from deployer.quantize.tool import tool_versions

SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536}
INT8 = build_recipe(QuantizeSpec(method="int8"), SMOLLM2)
W4A16 = build_recipe(QuantizeSpec(method="w4a16"), SMOLLM2)
BASE = {
    "source": "folder:abc",
    "recipe": INT8,
    "calibration_sha256": "c" * 64,
    "samples": 64,
    "sequence_length": 512,
    "evaluation_sha256": "e" * 64,
    "tools": {"llmcompressor": "0.14.0", "torch": "2.13.0"},
}


def key(**changes: object) -> str:
    return artifact_key(**{**BASE, **changes})  # type: ignore[arg-type]


def test_the_key_is_deterministic() -> None:
    assert key() == key()
    assert key(tools={"torch": "2.13.0", "llmcompressor": "0.14.0"}) == key()  # order-free
    assert len(key()) == 64


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"source": "folder:abd"}, id="source"),
        pytest.param({"recipe": W4A16}, id="recipe"),
        pytest.param(
            {"recipe": dataclasses.replace(INT8, smoothing_strength=0.5)}, id="recipe-option"
        ),
        pytest.param({"calibration_sha256": "d" * 64}, id="calibration"),
        pytest.param({"samples": 32}, id="samples"),
        pytest.param({"sequence_length": 256}, id="sequence-length"),
        pytest.param({"evaluation_sha256": "f" * 64}, id="evaluation-text"),
        pytest.param({"tools": {"llmcompressor": "0.15.0", "torch": "2.13.0"}}, id="tool-version"),
    ],
)
def test_the_key_changes_with_every_input(change: dict[str, object]) -> None:
    assert key(**change) != key()


def test_a_locked_source_is_identified_by_its_file_hashes() -> None:
    files = {"model.safetensors": "a" * 64, "config.json": "b" * 64}

    assert source_identity(files, "fp") == source_identity(dict(reversed(files.items())), "x")
    assert source_identity({**files, "config.json": "c" * 64}, "fp") != source_identity(files, "fp")
    assert source_identity(None, "fp") == "folder:fp"


def test_the_tool_versions_are_the_pinned_ones() -> None:
    assert tool_versions()["llmcompressor"] == "0.14.0"
    assert set(tool_versions()) >= {"llmcompressor", "compressed-tensors", "torch", "transformers"}


def record(source_ppl: float = 10.0, quantized_ppl: float = 10.2) -> QuantizeRecord:
    return QuantizeRecord(
        key="k" * 64,
        method="int8",
        recipe=INT8.describe(),
        recipe_json=INT8.as_json(),
        source="/models/x",
        source_identity="folder:abc",
        calibration="built-in chat-v1",
        calibration_sha256="c" * 64,
        calibration_samples=64,
        sequence_length=512,
        evaluation="built-in en-v1",
        evaluation_sha256="e" * 64,
        evaluation_tokens=1200,
        source_perplexity=source_ppl,
        quantized_perplexity=quantized_ppl,
        source_bytes=269_000_000,
        artifact_bytes=0,
        quantize_seconds=60.0,
        total_seconds=90.0,
        versions={"llmcompressor": "0.14.0"},
        created_at="2026-01-01T00:00:00+00:00",
    )


def built_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "built"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    return folder


def test_publish_moves_files_into_blobs_and_the_folder_appears_complete(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "models")
    assert store.record("k" * 64) is None

    published = store.publish("k" * 64, built_folder(tmp_path), record())

    folder = store.path("k" * 64)
    assert (folder / "config.json").read_text() == '{"model_type": "llama"}'
    assert (folder / "model.safetensors").is_symlink()
    assert published.artifact_bytes == 1000 + len('{"model_type": "llama"}')
    assert published.weight_bytes == 1000
    assert store.record("k" * 64) == published
    assert not (tmp_path / "built").exists()
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".k")] == []


def test_publish_of_a_key_already_stored_keeps_the_first(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "models")
    first = store.publish("k" * 64, built_folder(tmp_path), record())

    again = store.publish("k" * 64, built_folder(tmp_path), record(quantized_ppl=99.0))

    assert again == first


def test_a_folder_without_its_record_is_not_an_artifact(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "models")
    store.publish("k" * 64, built_folder(tmp_path), record())
    os.chmod(store.path("k" * 64), 0o755)
    (store.path("k" * 64) / RECORD_NAME).unlink()

    assert store.record("k" * 64) is None


def test_a_new_staging_folder_removes_what_an_interrupted_build_left(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "models")
    leftover = store.staging / ("k" * 64 + ".99999")
    (leftover / "model").mkdir(parents=True)

    fresh = store.staging_dir("k" * 64)

    assert not leftover.exists()
    assert fresh.is_dir()
    assert list(fresh.iterdir()) == []


def job(max_increase: float) -> QuantizeJob:
    name, sha = BUILTIN_EVALUATION["en-v1"]
    text = ResolvedText(Path(name), sha, "built-in en-v1")
    return QuantizeJob(
        key="k" * 64,
        recipe=W4A16,
        source_path=Path("/models/x"),
        source_identity="folder:abc",
        calibration=text,
        samples=64,
        sequence_length=512,
        evaluation=text,
        max_increase=max_increase,
        artifact_path=Path("/store/k"),
    )


def test_the_gate_passes_within_the_allowed_increase() -> None:
    check_gate(job(0.10), record(10.0, 10.9))

    assert describe_gate(job(0.10), record(10.0, 10.9)) == (
        "perplexity 10.00 -> 10.90 (+9.0%), gate +10%: pass"
    )


def test_the_gate_refuses_with_the_measured_numbers() -> None:
    with pytest.raises(QualityGateError) as caught:
        check_gate(job(0.10), record(12.3, 19.8))

    assert caught.value.message == (
        "w4a16 raised perplexity 12.30 -> 19.80 (+61%), the gate allows +10% "
        "(artifact kkkkkkkkkkkk, not deployed)"
    )
    assert "maxPerplexityIncrease" in (caught.value.hint or "")

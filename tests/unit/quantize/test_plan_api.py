"""deployer plan for quantized manifests: the steps, the key, and the refusals before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployerError, ManifestError, PlanError, UnsupportedError
from deployer.settings import Settings
from tests.conftest import MANIFESTS

INT8 = MANIFESTS / "demo" / "smollm2-135m-int8.yaml"
W4A16 = MANIFESTS / "demo" / "smollm2-135m-w4a16.yaml"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """An empty model store, so nothing is quantized yet."""
    return Settings(home=tmp_path / "home", cache=tmp_path / "cache")


def variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text
    path = tmp_path / source.name
    calibration = source.parent / "calibration"
    path.write_text(text.replace(old, new).replace("file: calibration/", f"file: {calibration}/"))
    return path


def test_plan_shows_quantize_create_then_the_gate(settings: Settings) -> None:
    plan = api.plan(W4A16, settings)

    steps = {s.name: s for s in plan.steps}
    assert [s.name for s in plan.steps][:3] == ["model", "quantize", "gate"]
    assert steps["quantize"].action == "create"
    assert steps["quantize"].reason.startswith("w4a16 (gptq, group 64) on 64 samples of file ")
    assert steps["gate"].reason == "perplexity may rise at most +30% (built-in en-v1)"
    model = plan.engine.args[plan.engine.args.index("--model") + 1]
    assert model.startswith(str(settings.models_dir / "quantized"))


def test_the_same_manifest_plans_the_same_key(settings: Settings, tmp_path: Path) -> None:
    def artifact(path: Path) -> str:
        args = api.plan(path, settings).engine.args
        return args[args.index("--model") + 1]

    assert artifact(INT8) == artifact(INT8)
    assert artifact(INT8) != artifact(variant(tmp_path, INT8, "samples: 32", "samples: 16"))


def test_a_group_size_the_model_cannot_take_is_refused_by_plan(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(PlanError, match="groupSize 128 does not divide the model's hidden_size"):
        api.plan(variant(tmp_path, W4A16, "groupSize: 64", "groupSize: 128"), settings)


def test_a_calibration_file_that_changed_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = variant(tmp_path, INT8, "sha256: 9004", "sha256: 0004")

    with pytest.raises(ManifestError, match="the manifest pins 0004") as caught:
        api.plan(path, settings)

    assert "review it, then update sha256" in (caught.value.hint or "")


def test_an_unknown_built_in_set_is_refused(settings: Settings, tmp_path: Path) -> None:
    text = INT8.read_text()
    start = text.index("    calibration:")
    end = text.index("    gate:")
    path = tmp_path / "m.yaml"
    path.write_text(text[:start] + "    calibration: {builtin: chat-v9}\n" + text[end:])

    with pytest.raises(ManifestError, match="no built-in text named 'chat-v9'") as caught:
        api.plan(path, settings)

    assert "chat-v1" in (caught.value.hint or "")


def test_kubernetes_targets_refuse_deployers_own_quantization(
    settings: Settings, tmp_path: Path
) -> None:
    path = variant(tmp_path, INT8, "kind: local", "kind: kubernetes")

    with pytest.raises(UnsupportedError, match="not supported on kubernetes targets"):
        api.plan(path, settings)


def test_quantize_without_the_quantizer_says_how_to_install_it(
    settings: Settings, tmp_path: Path
) -> None:
    from deployer.events import EventBus

    with pytest.raises(DeployerError, match="the quantizer") as caught:
        api.quantize(INT8, settings, EventBus())

    assert "deployer quantizer install" in (caught.value.hint or "")

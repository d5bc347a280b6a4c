"""spec.quantize in a manifest: what loads, and what a user sees for each mistake (file:line)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.errors import ManifestError
from deployer.manifest import load_manifest, load_manifests

VALID = """\
apiVersion: deployer/v1alpha1
kind: ModelDeployment
metadata:
  name: demo
spec:
  model:
    source: local
    path: ./weights
  quantize:
"""


def manifest(tmp_path: Path, quantize: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(VALID + textwrap.indent(textwrap.dedent(quantize), "    "))
    return path


def problem(tmp_path: Path, quantize: str) -> tuple[str, str, str]:
    """(line:column, message, hint) of the one problem ``quantize`` has."""
    path = manifest(tmp_path, quantize)
    with pytest.raises(ManifestError) as info:
        load_manifests([path])
    [found] = info.value.problems
    assert found.location is not None
    return found.location.removeprefix(f"{path}:"), found.reason, found.hint or ""


def test_the_defaults_calibrate_on_the_built_in_set_and_allow_25_percent(tmp_path: Path) -> None:
    spec = load_manifest(manifest(tmp_path, "method: int8\n")).deployment.spec.quantize

    assert spec.calibration.builtin == "chat-v1"
    assert (spec.calibration.samples, spec.calibration.sequence_length) == (64, 512)
    assert spec.gate.max_perplexity_increase == 0.25
    assert spec.gate.text.builtin == "en-v1"
    assert spec.group_size == "auto"


@pytest.mark.parametrize(("written", "fraction"), [("10%", 0.10), ("0.1", 0.1), ("2.5%", 0.025)])
def test_the_gate_takes_a_fraction_or_a_percentage(
    tmp_path: Path, written: str, fraction: float
) -> None:
    path = manifest(tmp_path, f"method: w4a16\ngate: {{maxPerplexityIncrease: '{written}'}}\n")

    gate = load_manifest(path).deployment.spec.quantize.gate

    assert gate.max_perplexity_increase == pytest.approx(fraction)


def test_a_pinned_calibration_file(tmp_path: Path) -> None:
    text = f"""\
        method: int8
        calibration:
          file: calibration/samples.jsonl
          sha256: {"a" * 64}
          samples: 32
          sequenceLength: 256
        """
    spec = load_manifest(manifest(tmp_path, text)).deployment.spec.quantize

    assert spec.calibration.file == "calibration/samples.jsonl"
    assert spec.calibration.builtin is None


@pytest.mark.parametrize(
    ("quantize", "position", "message", "hint"),
    [
        pytest.param(
            "method: int4\n",
            "10:13",
            "spec.quantize.method: Input should be 'none', 'fp8', 'int8' or 'w4a16'",
            "",
            id="unknown-method",
        ),
        pytest.param(
            "method: w4a16\ngroupSize: 4\n",
            "11:16",
            "spec.quantize.groupSize: Input should be greater than or equal to 8 or 'auto'",
            "",
            id="group-size-too-small",
        ),
        pytest.param(
            "method: int8\ngroupSize: 64\n",
            "9:3",
            "spec.quantize: groupSize applies to method w4a16 only",
            "",
            id="group-size-with-int8",
        ),
        pytest.param(
            "method: fp8\ncalibration: {samples: 8}\n",
            "9:3",
            "spec.quantize: calibration: only for method int8 or w4a16 (deployer quantizes "
            "those itself); method fp8 takes none",
            "",
            id="calibration-with-fp8",
        ),
        pytest.param(
            "method: int8\ncalibration: {file: c.jsonl}\n",
            "11:5",
            "spec.quantize.calibration: a calibration or evaluation 'file' needs its 'sha256' "
            "(run: sha256sum FILE)",
            "",
            id="file-without-sha256",
        ),
        pytest.param(
            "method: int8\ncalibration: {file: c.jsonl, sha256: abc}\n",
            "11:42",
            "spec.quantize.calibration.sha256: String should match pattern '^[0-9a-f]{64}$'",
            "",
            id="short-sha256",
        ),
        pytest.param(
            "method: int8\ncalibration: {samples: 0}\n",
            "11:28",
            "spec.quantize.calibration.samples: Input should be greater than or equal to 1",
            "",
            id="no-samples",
        ),
        pytest.param(
            "method: int8\ngate: {maxPerplexityIncrease: lots%}\n",
            "11:35",
            "spec.quantize.gate.maxPerplexityIncrease: 'lots%' is not a percentage such as '10%'",
            "",
            id="bad-percentage",
        ),
        pytest.param(
            "method: int8\ngate: {maxPerplexityIncrease: -0.1}\n",
            "11:35",
            "spec.quantize.gate.maxPerplexityIncrease: cannot be negative (0 allows no increase)",
            "",
            id="negative-gate",
        ),
        pytest.param(
            "method: int8\ngate: {maxPerplexityIncrese: 0.1}\n",
            "11:12",
            "spec.quantize.gate.maxPerplexityIncrese: unknown key",
            "did you mean 'maxPerplexityIncrease'?",
            id="misspelt-gate-key",
        ),
    ],
)
def test_mistakes_name_the_line_the_field_and_what_to_do(
    tmp_path: Path, quantize: str, position: str, message: str, hint: str
) -> None:
    found_position, found_message, found_hint = problem(tmp_path, quantize)

    assert (found_position, found_message) == (position, message)
    assert found_hint.startswith(hint)

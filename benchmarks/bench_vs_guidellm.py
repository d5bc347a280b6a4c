"""`deployer bench` against a bare GuideLLM run of the same scenario, on the same engine.

The demo is applied once (a fresh home) with a short fixed-concurrency `spec.benchmark`. Then, in
alternating rounds: `deployer bench smollm2-demo -o json` (which writes GuideLLM's scenario into
the deployment's bench folder), and GuideLLM's own `guidellm run --scenario` of that very file
(the key in GuideLLM's environment variable, its report to a file of its own), its report read
with deployer's parser so both are counted alike. Prints each round's wall time and, per load
point, output tokens/s and TTFT p50 of both with their ratios (aims: figures within 5%, wall time
at most 1.1x). ``--quick`` runs one short round, for CI (no figure is asserted).

    .venv/bin/python benchmarks/bench_vs_guidellm.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _common import NAME, demo_unmeasured, deployer, median, table

from deployer.bench.guidellm_load import parse_benchmark
from deployer.bench.measure import load_point
from deployer.settings import Settings
from deployer.tools.guidellm import find_guidellm


def manifest(folder: Path, seconds: int) -> Path:
    text = demo_unmeasured().rstrip("\n") + "\n"
    benchmark = {
        "workload": {"promptTokens": 64, "outputTokens": 32},
        "load": {"kind": "concurrent", "concurrencies": [1, 2]},
        "durationSeconds": seconds,
        "warmupSeconds": 2,
    }
    text += f"  benchmark: {json.dumps(benchmark)}\n"
    path = folder / "demo-bench.yaml"
    path.write_text(text)
    return path


def ours(home: Path) -> tuple[float, dict[float, tuple[float, float]], Path]:
    started = time.perf_counter()
    result = json.loads(deployer("bench", NAME, "-o", "json", home=home).stdout)
    took = time.perf_counter() - started
    [scenario] = sorted(home.glob(f"deployments/{NAME}/bench/*/scenario.json"))[-1:]
    figures = {
        p["value"]: (p["output_tokens_per_second"], p["ttft_ms"]["p50"]) for p in result["points"]
    }
    return took, figures, scenario


def bare(home: Path, scenario: Path, round_: int) -> tuple[float, dict[float, tuple[float, float]]]:
    guidellm = find_guidellm(Settings.from_env()).bin("guidellm")
    key = deployer("key", NAME, home=home).stdout.strip()
    report = home / f"bare-{round_}.json"
    started = time.perf_counter()
    subprocess.run(
        [
            str(guidellm),
            "run",
            "--scenario",
            str(scenario),
            "--output",
            json.dumps({"kind": "json", "path": str(report)}),
            "--disable-console-interactive",
        ],
        env={**os.environ, "GUIDELLM__SPEC__BACKEND__API_KEY": key},
        check=True,
        capture_output=True,
    )
    took = time.perf_counter() - started
    figures = {}
    for raw in json.loads(report.read_text())["benchmarks"]:
        point = load_point(parse_benchmark(raw, "concurrent"), None)
        figures[point.value] = (point.output_tokens_per_second, point.ttft_ms.p50 or 0.0)
    return took, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, seconds = (1, 6) if args.quick else (args.rounds, 20)
    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as tmp:
        home = Path(tmp) / "home"
        deployer("apply", str(manifest(Path(tmp), seconds)), home=home)
        try:
            ours_times, bare_times = [], []
            rows: list[tuple[str, str]] = []
            for round_ in range(rounds):
                took, mine, scenario = ours(home)
                ours_times.append(took)
                bare_took, theirs = bare(home, scenario, round_)
                bare_times.append(bare_took)
                rows.append((f"round {round_ + 1} wall", f"{took:.1f}s vs {bare_took:.1f}s"))
                for value, (tokens, ttft) in sorted(mine.items()):
                    other_tokens, other_ttft = theirs[value]
                    rows.append(
                        (
                            f"round {round_ + 1} concurrency {value:g}",
                            f"out tok/s {tokens:.1f} vs {other_tokens:.1f} "
                            f"({tokens / other_tokens:.3f}x), TTFT p50 {ttft:.0f} vs "
                            f"{other_ttft:.0f} ms ({ttft / other_ttft:.3f}x)",
                        )
                    )
            ratio = median(ours_times) / median(bare_times)
            rows.append(("wall time, deployer / bare GuideLLM", f"{ratio:.3f}x (aim <= 1.10)"))
            table(rows)
        finally:
            deployer("destroy", NAME, home=home, check=False)


if __name__ == "__main__":
    main()

"""The plan's KV cache figures against the real engine's, for a tiny model of every family.

For each family (tests/support/tinymodels.py: random weights, built locally on first use) it
runs `deployer plan`, then `deployer apply` on the vLLM CPU build, reads the engine's KV pool
blocks from its /metrics (``vllm:cache_config_info``, ``num_gpu_blocks``) and its start-up line
"KV cache size: N tokens, Maximum concurrency for L tokens per request: Cx" from its log, and
destroys the deployment. The baseline is the engine's own figure, measured in the same run;
the table says, per family, whether the plan equals it. Exit code 1 when any family differs.

``--quick`` serves the tiny Llama only, for CI; ``--family K`` (repeatable) picks families.

    .venv/bin/python benchmarks/plan_accuracy.py [--quick] [--family K ...] [--context N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from _common import ROOT, deployer

sys.path.insert(0, str(ROOT))  # the test suite's tiny models
from tests.support.tinymodels import FAMILIES, cache_config_info, logged_kv, manifest, tiny


def measure(kind: str, context: int, home: Path) -> tuple[str, str, str, str, str]:
    name = f"bench-{kind}"
    path = manifest(tiny(kind), name, context, "64MiB", home / f"{name}.yaml")
    planned = json.loads(deployer("plan", str(path), "-o", "json", home=home).stdout)
    capacity, endpoint = planned["capacity"], planned["endpoint"]
    try:
        deployer("apply", str(path), home=home)
        log = (home / "deployments" / name / "engine.log").read_text()
        metrics = urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics").read()
    finally:
        deployer("destroy", name, home=home, check=False)
    logged = logged_kv(log)
    if logged is None:
        raise SystemExit(f"{kind}: vLLM did not log its KV cache size; see its log above")
    blocks = int(cache_config_info(metrics.decode()).get("num_gpu_blocks", "0"))
    planned_tokens = int(capacity["kv_cache_size_tokens"])
    planned_concurrency = f"{capacity['max_concurrency']:.2f}"
    equal = (capacity["kv_blocks"], planned_tokens, planned_concurrency) == (
        blocks,
        logged.tokens,
        logged.concurrency,
    )
    return (
        kind,
        f"{capacity['kv_blocks']:,} / {planned_tokens:,} / {planned_concurrency}x",
        f"{blocks:,} / {logged.tokens:,} / {logged.concurrency}x",
        "yes" if equal else "NO",
        FAMILIES[kind],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny Llama only, for CI")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES))
    parser.add_argument("--context", type=int, default=2048, help="maxModelLen (default 2048)")
    args = parser.parse_args()
    kinds = ["llama"] if args.quick else (args.family or list(FAMILIES))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(kind, args.context, Path(tmp)) for kind in kinds]
    header = ("family", "planned blocks / KV cache size / concurrency", "vLLM", "equal", "layout")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    exact = sum(row[3] == "yes" for row in rows)
    print(f"\n{exact} of {len(rows)} families exact at context {args.context}")
    if exact != len(rows):
        sys.exit(1)


if __name__ == "__main__":
    main()

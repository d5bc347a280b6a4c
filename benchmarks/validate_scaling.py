"""Validate time against manifest size; aim: linear, a steady multiple of parsing the YAML alone.

Manifests of growing size (up to just under the 1 MiB a manifest may have) in three shapes: a
long smoke list, a big serving.args map, and an alias-heavy one (every smoke check's expectation
written as an alias of one anchored mapping, so aliases grow with the file and stay within what
a manifest may hold). For each: bytes, seconds to validate (deployer.api.validate in this
process, the median of --repeat runs), seconds per KiB, and the same text parsed by PyYAML's
yaml.safe_load (the pure-Python SafeLoader, as deployer's ruamel parser is pure Python) as the
baseline. Linear cost shows as a flat seconds-per-KiB column and a flat ratio to the baseline;
the last table divides each shape's largest size's seconds per KiB by its smallest's (1.0:
linear).

    .venv/bin/python benchmarks/validate_scaling.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from _common import ROOT, table

sys.path.insert(0, str(ROOT))  # the checkout's deployer, before any installed copy

from deployer import api
from deployer.errors import ManifestError

KiB = 1024
SIZES_KIB = [8, 32, 128, 512, 960]
QUICK_SIZES_KIB = [4, 16, 64]

HEADER = """\
apiVersion: deployer/v1alpha1
kind: ModelDeployment
metadata:
  name: scaling
  labels:
    family: smollm
spec:
  model:
    source: local
    path: /nonexistent/validate-does-not-read-it
  serving:
    maxModelLen: 2048
    kvCacheMemory: 512MiB
"""


def smoke_list(count: int) -> str:
    checks = "".join(
        f"    - name: check {i}\n"
        f"      chat: What is {i} plus {i}? Answer with the number only.\n"
        f"      expect:\n        contains: '{2 * i}'\n"
        f"      maxTokens: 16\n"
        for i in range(count)
    )
    return (
        HEADER
        + "  resources:\n    accelerator: cpu\n  target:\n    kind: local\n"
        + ("  smoke:\n" + checks)
    )


def args_map(count: int) -> str:
    flags = "".join(f"      flag-{i}: {i}\n" for i in range(count))
    return (
        HEADER
        + "    args:\n"
        + flags
        + "  resources:\n    accelerator: cpu\n  target:\n    kind: local\n"
        + "  smoke:\n    - chat: What is the capital of France?\n"
    )


def aliases(count: int) -> str:
    first = (
        "    - chat: What is the capital of France?\n"
        "      expect: &answer\n        contains: Paris\n        notContains: [London, Rome]\n"
    )
    rest = "".join(
        f"    - chat: Capital of France, try {i}?\n      expect: *answer\n" for i in range(count)
    )
    return (
        HEADER
        + "  resources:\n    accelerator: cpu\n  target:\n    kind: local\n"
        + "  smoke:\n"
        + first
        + rest
    )


SHAPES: dict[str, Callable[[int], str]] = {
    "smoke list": smoke_list,
    "args map": args_map,
    "aliases": aliases,
}


def sized(shape: Callable[[int], str], target_bytes: int) -> tuple[int, str]:
    """The item count (and text) whose size is closest to ``target_bytes`` from below."""
    per_item = max(1, len(shape(101)) - len(shape(100)))
    count = max(1, (target_bytes - len(shape(0))) // per_item)
    text = shape(count)
    while len(text.encode()) > target_bytes and count > 1:
        count -= max(1, count // 100)
        text = shape(count)
    return count, text


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def validate_seconds(path: Path, repeat: int) -> tuple[float, str]:
    """Seconds to validate ``path``, and 'valid' or the first problem's reason."""
    verdict = "valid"

    def once() -> None:
        nonlocal verdict
        try:
            api.validate([path])
        except ManifestError as exc:
            verdict = f"refused: {exc.reason}"[:60]

    return median_seconds(once, repeat), verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--repeat", type=int, default=None, help="runs per size (default 3)")
    args = parser.parse_args()
    sizes = QUICK_SIZES_KIB if args.quick else SIZES_KIB
    repeat = args.repeat or (1 if args.quick else 3)
    rows = []
    per_kib: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm-up.yaml"  # deployer imports some validators on first use
        warm.write_text(smoke_list(2))
        validate_seconds(warm, 1)
        for name, shape in SHAPES.items():
            for size in sizes:
                count, text = sized(shape, size * KiB)
                path = Path(tmp) / f"{name.replace(' ', '-')}-{size}.yaml"
                path.write_text(text)
                nbytes = path.stat().st_size
                seconds, verdict = validate_seconds(path, repeat)
                baseline = median_seconds(lambda text=text: yaml.safe_load(text), repeat)
                kib = nbytes / KiB
                per_kib.setdefault(name, []).append(seconds / kib)
                rows.append((name, count, nbytes, seconds, seconds / kib, baseline, verdict))
    print(
        f"{'shape':<11} {'items':>6} {'bytes':>9} {'validate s':>10} {'s/KiB':>9} "
        f"{'safe_load s':>11} {'ratio':>6}  verdict"
    )
    for name, count, nbytes, seconds, spk, baseline, verdict in rows:
        print(
            f"{name:<11} {count:>6} {nbytes:>9,} {seconds:>10.4f} {spk:>9.5f} "
            f"{baseline:>11.4f} {seconds / baseline:>6.1f}  {verdict}"
        )
    print()
    table(
        [
            (
                f"{name}: s/KiB at {sizes[-1]} KiB / at {sizes[0]} KiB",
                f"{values[-1] / values[0]:.2f}  (1.0: linear)",
            )
            for name, values in per_kib.items()
        ]
        + [("runs per size", f"{repeat} (median)"), ("baseline", "PyYAML yaml.safe_load")]
    )


if __name__ == "__main__":
    main()

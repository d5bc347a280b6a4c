"""Validate time against manifest size; aim: linear, a steady multiple of parsing the YAML alone.

Manifests of growing size in three shapes: a long smoke list, a big serving.args map, and an
alias-heavy one (every smoke check's expectation written as an alias of one anchored mapping, so
aliases grow with the file). The largest of each shape is the biggest deployer accepts (under
960 KiB, and within the number of values a manifest may hold, aliases expanded); the others are
1/64 to 1/2 of it, and one past the limit shows what a refusal costs. For each: bytes, seconds
to validate (deployer.api.validate in this process, the median of --repeat runs), seconds per
KiB, and the same text parsed by PyYAML's yaml.safe_load (the pure-Python SafeLoader) as the
baseline. deployer reads plain YAML with libyaml (its fast path), so the first two shapes run
well under the baseline; anchors and aliases take its pure-Python guarded parser (ruamel), so
the alias-heavy shape runs above it. Linear cost shows as a flat
seconds-per-KiB column and a flat ratio to the baseline; the last table divides each shape's
seconds per KiB at its largest size by that at its smallest (1.0: linear).

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
#: Sizes are fractions of the largest manifest of each shape deployer accepts within MAX_KIB.
MAX_KIB = 960
FRACTIONS = [1 / 64, 1 / 16, 1 / 4, 1 / 2, 1]
QUICK_MAX_KIB = 64
QUICK_FRACTIONS = [1 / 16, 1 / 4, 1]

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


def accepted(shape: Callable[[int], str], count: int, folder: Path) -> bool:
    path = folder / "probe.yaml"
    path.write_text(shape(count))
    return validate_seconds(path, 1)[1] == "valid"


def largest(shape: Callable[[int], str], max_bytes: int, folder: Path) -> int:
    """The most items of ``shape`` within ``max_bytes`` that deployer still accepts (a manifest
    also has a limit on its number of values): found by bisection, to within 2%."""
    count, _ = sized(shape, max_bytes)
    if accepted(shape, count, folder):
        return count
    low, high = 1, count
    while high - low > max(1, low // 50):
        middle = (low + high) // 2
        if accepted(shape, middle, folder):
            low = middle
        else:
            high = middle
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="up to 64 KiB, one run each")
    parser.add_argument("--repeat", type=int, default=None, help="runs per size (default 3)")
    args = parser.parse_args()
    max_bytes = (QUICK_MAX_KIB if args.quick else MAX_KIB) * KiB
    fractions = QUICK_FRACTIONS if args.quick else FRACTIONS
    repeat = args.repeat or (1 if args.quick else 3)
    rows = []
    per_kib: dict[str, list[float]] = {}
    refusals = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = folder / "warm-up.yaml"  # deployer imports some validators on first use
        warm.write_text(smoke_list(2))
        validate_seconds(warm, 1)
        for name, shape in SHAPES.items():
            top = largest(shape, max_bytes, folder)
            for fraction in fractions:
                count = max(1, int(top * fraction))
                text = shape(count)
                path = folder / f"{name.replace(' ', '-')}-{count}.yaml"
                path.write_text(text)
                nbytes = path.stat().st_size
                seconds, verdict = validate_seconds(path, repeat)
                baseline = median_seconds(lambda text=text: yaml.safe_load(text), repeat)
                kib = nbytes / KiB
                per_kib.setdefault(name, []).append(seconds / kib)
                rows.append((name, count, nbytes, seconds, seconds / kib, baseline, verdict))
            if not args.quick:
                # Past the limit: how long the refusal takes (the guard counts as it parses).
                count, text = sized(shape, max_bytes)
                if count > top:
                    path = folder / f"{name.replace(' ', '-')}-over.yaml"
                    path.write_text(text)
                    seconds, verdict = validate_seconds(path, repeat)
                    refusals.append((name, count, path.stat().st_size, seconds, verdict))
    print(
        f"{'shape':<11} {'items':>6} {'bytes':>9} {'validate s':>10} {'s/KiB':>9} "
        f"{'safe_load s':>11} {'ratio':>6}  verdict"
    )
    for name, count, nbytes, seconds, spk, baseline, verdict in rows:
        print(
            f"{name:<11} {count:>6} {nbytes:>9,} {seconds:>10.4f} {spk:>9.5f} "
            f"{baseline:>11.4f} {seconds / baseline:>6.1f}  {verdict}"
        )
    for name, count, nbytes, seconds, verdict in refusals:
        print(f"{name:<11} {count:>6} {nbytes:>9,} {seconds:>10.4f}  (over the limit) {verdict}")
    print()
    table(
        [
            (
                f"{name}: s/KiB at the largest / at the smallest",
                f"{values[-1] / values[0]:.2f}  (1.0: linear)",
            )
            for name, values in per_kib.items()
        ]
        + [
            ("sizes", f"up to {max_bytes // KiB} KiB or the most values a manifest may hold"),
            ("runs per size", f"{repeat} (median)"),
            ("baseline", "PyYAML yaml.safe_load (pure-Python SafeLoader)"),
        ]
    )


if __name__ == "__main__":
    main()

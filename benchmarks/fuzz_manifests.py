"""Fuzz deployer's input files with a larger budget than CI's: cases, outcomes by mutation class,
time per case; exits 1 if any case breaks the hostile-input promise.

The cases are tests/hostile/fuzzing.py's (mutated manifests through validate and plan; mutated
inventories, lockfiles and model configs through plan), run two at a time: a fork server with
deployer imported screens each command, and a fresh ``python -m deployer`` confirms every kind
of failure (see tests/hostile/runners.py). Failing cases are written to --failures, one folder
each with CASE.txt (what was mutated, the outputs, how to rerun it). Baseline in the same run:
the same commands on the unmutated examples.

    .venv/bin/python benchmarks/fuzz_manifests.py [--cases N] [--seed S] [--target T] [--quick]
    .venv/bin/python benchmarks/fuzz_manifests.py --target manifest --case 146 --write DIR
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from _common import ROOT, table

sys.path.insert(0, str(ROOT))  # the checkout's deployer and tests, before any installed copy

from tests.hostile.fuzzing import (
    DEFAULT_SEED,
    TARGETS,
    CaseResult,
    baseline_cases,
    fuzz,
    make_case,
    run_case,
    split,
)
from tests.hostile.runners import (
    MEMORY_LIMIT,
    TIMEOUT_SECONDS,
    ForkServer,
    SubprocessRunner,
    check,
    symptom,
)

QUICK_CASES = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4000, help="cases in all (default 4000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    parser.add_argument(
        "--target", choices=list(TARGETS), action="append", help="only these targets"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runner", choices=["fork", "subprocess"], default="fork")
    parser.add_argument("--failures", type=Path, default=None, help="where failing cases go")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases, for CI")
    parser.add_argument("--case", type=int, help="only this case (with one --target)")
    parser.add_argument("--write", type=Path, help="with --case: write its files here")
    args = parser.parse_args()
    if args.case is not None:
        raise SystemExit(one_case(args))
    total = QUICK_CASES if args.quick else args.cases
    plan = split(total)
    if args.target:
        plan = {t: max(1, total // len(args.target)) for t in args.target}
    failures = args.failures or Path(tempfile.gettempdir()) / "deployer-fuzz-failures" / "bench"
    with tempfile.TemporaryDirectory() as tmp:
        baseline = baseline_seconds(Path(tmp) / "baseline")
        done = Counter[str]()

        def progress(result: CaseResult) -> None:
            done[result.case.target] += 1
            count = sum(done.values())
            if count % 100 == 0:
                print(f"  {count} cases ...", file=sys.stderr, flush=True)

        report = fuzz(
            args.seed,
            plan,
            Path(tmp) / "scratch",
            failures,
            workers=args.workers,
            runner=args.runner,
            start=args.start,
            progress=progress,
        )
    results = report.results
    commands = [o for r in results for o in r.outcomes]
    per_case = [sum(o.seconds for o in r.outcomes) for r in results]
    rss = [o.max_rss_kib for o in commands if o.max_rss_kib]
    table(
        [
            ("seed", str(args.seed)),
            ("cases", f"{len(results)} ({', '.join(f'{t} {n}' for t, n in plan.items())})"),
            ("commands run", str(len(commands))),
            ("runner", f"{report.runner}, {args.workers} at a time"),
            ("limits per command", f"{TIMEOUT_SECONDS:.0f} s, {MEMORY_LIMIT // 1024**3} GiB"),
            ("wall time", f"{report.seconds:.1f} s ({report.seconds / len(results):.3f} s/case)"),
            (
                "command time per case",
                f"median {statistics.median(per_case):.3f} s, "
                f"p95 {_percentile(per_case, 95):.3f} s, max {max(per_case):.2f} s",
            ),
            ("baseline: the unmutated examples", f"{baseline:.3f} s per case (median)"),
            ("peak memory of a command", f"{max(rss) // 1024} MiB" if rss else "not measured"),
            ("cases that broke the promise", str(len(report.failed))),
        ]
    )
    print()
    by_class(results)
    if report.failed:
        print()
        print(report.failure_message())
        raise SystemExit(1)
    print("\nno case broke the promise")


def by_class(results: list[CaseResult]) -> None:
    """One row per mutation class: cases, how the first command ended, time."""
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    seconds: dict[str, list[float]] = defaultdict(list)
    for result in results:
        outcome = (
            "broke"
            if result.violations
            else "accepted"
            if result.outcomes and result.outcomes[0].code == 0
            else "refused"
        )
        for name in dict.fromkeys(result.case.classes):
            rows[name][outcome] += 1
            seconds[name].append(sum(o.seconds for o in result.outcomes))
    width = max(len(n) for n in rows) if rows else 5
    print(f"{'mutation class':<{width}}  cases  accepted  refused  broke  s/case")
    for name in sorted(rows, key=lambda n: (-rows[n]["broke"], n)):
        counts = rows[name]
        print(
            f"{name:<{width}}  {sum(counts.values()):>5}  {counts['accepted']:>8}  "
            f"{counts['refused']:>7}  {counts['broke']:>5}  {statistics.mean(seconds[name]):>6.3f}"
        )


def baseline_seconds(scratch: Path) -> float:
    """Median command time of the unmutated examples (tests/hostile/fuzzing.py's baseline
    cases), through the same fork server."""
    server = ForkServer(scratch / "server")
    try:
        times = []
        for case in baseline_cases():
            result = run_case(case, scratch / "case", server)
            if result.violations or any(o.code != 0 for o in result.outcomes):
                raise SystemExit(f"the unmutated {case.template} does not work: fix that first")
            times.append(sum(o.seconds for o in result.outcomes))
        return statistics.median(times)
    finally:
        server.close()


def one_case(args: argparse.Namespace) -> int:
    if not args.target or len(args.target) != 1:
        print("--case needs exactly one --target", file=sys.stderr)
        return 2
    case = make_case(args.seed, args.target[0], args.case)
    print(case.describe())
    if args.write is None:
        return 0
    if args.write.exists() and any(args.write.iterdir()):
        print(f"{args.write} is not empty; give a new folder", file=sys.stderr)
        return 2
    folder = case.write(args.write)
    print(f"written to {folder}; running it with a fresh python -m deployer per command:\n")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # run_case empties its folder first
        result = run_case(case, Path(tmp) / "case", SubprocessRunner())
    for outcome in result.outcomes:
        problems = check(outcome)
        verdict = "; ".join(problems) if problems else "keeps the promise"
        print(f"deployer {' '.join(outcome.command)}: exit {outcome.code}, {outcome.seconds:.1f} s")
        print(f"  {symptom(outcome)}")
        print(f"  -> {verdict}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if result.violations else 0


def _percentile(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


if __name__ == "__main__":
    main()

"""Helpers shared by the benchmark scripts: run the deployer command, time things, print tables."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "model_manifests" / "demo" / "smollm2-135m.yaml"
NAME = "smollm2-demo"

sys.path.insert(0, str(ROOT))  # the test suite's helpers
from tests.support.demotext import demo_unmeasured  # noqa: E402

__all__ = ["demo_unmeasured"]


def deployer(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEPLOYER_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", *args], env=env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"deployer {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def status(home: Path) -> dict[str, object]:
    [entry] = json.loads(deployer("status", NAME, "-o", "json", home=home).stdout)
    return entry  # type: ignore[no-any-return]


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")

"""What a stored benchmark becomes for people and other tools: the picture (latency against
throughput, PNG and SVG), llm-d's BenchmarkReport v0.2 documents (JSON), and two runs side by side.

Files go under ``<home>/benchmarks/<deployment>/<id>/`` (``latency.png``, ``latency.svg``,
``report.json``), or ``<home>/benchmarks/compare-<a>-<b>/`` for a comparison's picture; each is
written whole or not at all. Reads the state only.
"""

from __future__ import annotations

import json
from pathlib import Path

from deployer import atomic
from deployer.api.bench import Benchmark, benchmark
from deployer.api.types import Result
from deployer.bench import compare as comparing
from deployer.bench import plot, report
from deployer.settings import Settings

#: The comparison table's columns: the load, the figure, A, B and B/A.
COMPARE_COLUMNS = ("load", "figure", "A", "B", "B/A")


class BenchFiles(Result):
    """The files one benchmark (or a comparison of two) was drawn and exported to."""

    png: Path
    svg: Path
    report: Path | None = None


class BenchComparison(Result):
    """Two stored benchmarks side by side, and the picture of both."""

    comparison: comparing.Comparison
    files: BenchFiles


def bench_folder(settings: Settings, stored: Benchmark) -> Path:
    return settings.home / "benchmarks" / stored.result.deployment / str(stored.id)


def write_files(stored: Benchmark, settings: Settings, folder: Path | None = None) -> BenchFiles:
    """Draw ``stored`` and export it as BenchmarkReport v0.2 documents (one per load point, in
    one JSON list), into ``folder`` (default :func:`bench_folder`)."""
    where = folder or bench_folder(settings, stored)
    where.mkdir(parents=True, exist_ok=True)
    png, svg, exported = where / "latency.png", where / "latency.svg", where / "report.json"
    plot.draw([stored.result], png, svg)
    documents = report.benchmark_reports(stored.result, model=stored.result.model)
    atomic.write_text(exported, json.dumps(documents, indent=2, sort_keys=True) + "\n")
    return BenchFiles(png=png, svg=svg, report=exported)


def compare(first: int, second: int, settings: Settings) -> BenchComparison:
    """Stored benchmarks ``first`` and ``second`` side by side (ratios second/first), drawn in
    one picture. NotFoundError for an unknown id."""
    a, b = benchmark(first, settings), benchmark(second, settings)
    where = settings.home / "benchmarks" / f"compare-{first}-{second}"
    where.mkdir(parents=True, exist_ok=True)
    png, svg = where / "latency.png", where / "latency.svg"
    plot.draw([a.result, b.result], png, svg)
    return BenchComparison(
        comparison=comparing.compare(a.result, b.result), files=BenchFiles(png=png, svg=svg)
    )

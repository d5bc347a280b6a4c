"""Run a GuideLLM scenario and write each load point's result as soon as it finishes.

A standalone script, run with GuideLLM's virtualenv's Python (deployer's own has no GuideLLM)::

    python guidellm_worker.py SCENARIO_JSON OUT_DIR

The scenario is GuideLLM's own layout (what ``guidellm run --scenario FILE`` reads, built by
:func:`deployer.bench.guidellm_load.scenario`); the API key is not in it but in the environment
variable ``DEPLOYER_BENCH_API_KEY``, set as the backend's ``api_key``. GuideLLM runs as its
``guidellm run`` does (:func:`guidellm.benchmark.entrypoints.benchmark_generative_text`), with one
addition: each finished benchmark (one load point, or one probe of a search) is written to
``OUT_DIR/point-NNN.json`` at once and announced as a ``POINT NNN PATH`` line, so a run stopped
by Ctrl-C or a dying engine keeps the points it finished. GuideLLM writes its whole report where
the scenario's outputs say when every point is done.

Other lines are GuideLLM's own log (a progress line per point every few seconds). SIGTERM and
SIGINT stop the load (GuideLLM's worker processes with it); exit code 0 when every point ran,
130 when stopped, 1 when GuideLLM failed. Imports nothing from deployer and GuideLLM only inside
:func:`main`, so importing this module is free.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

POINT_PREFIX = "POINT "
KEY_VARIABLE = "DEPLOYER_BENCH_API_KEY"


def main(argv: list[str] | None = None) -> int:
    import asyncio
    import json
    import os
    import signal

    # Run as a file, this folder comes first on sys.path: its modules must not shadow GuideLLM's.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [entry for entry in sys.path if entry and str(Path(entry).resolve()) != here]
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: guidellm_worker.py SCENARIO_JSON OUT_DIR", file=sys.stderr)
        return 2
    scenario_path, out_dir = Path(args[0]), Path(args[1])
    out_dir.mkdir(parents=True, exist_ok=True)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)

    import guidellm.benchmark.entrypoints as entrypoints
    from guidellm.benchmark.progress import GenerativeLoggingBenchmarkerProgress
    from guidellm.schemas.benchmark import BenchmarkScenario

    class PointWriter(GenerativeLoggingBenchmarkerProgress):  # type: ignore[misc]
        """GuideLLM's logging progress, also writing each benchmark as it completes."""

        written = 0

        async def on_benchmark_complete(self, benchmark: Any) -> None:
            await super().on_benchmark_complete(benchmark)
            PointWriter.written += 1
            path = out_dir / f"point-{PointWriter.written:03d}.json"
            partial = path.with_suffix(".json.partial")
            partial.write_text(json.dumps(benchmark.model_dump(mode="json")))
            os.replace(partial, path)
            print(f"{POINT_PREFIX}{PointWriter.written:03d} {path}", flush=True)

    entrypoints.GenerativeLoggingBenchmarkerProgress = PointWriter

    data = json.loads(scenario_path.read_text())
    key = os.environ.pop(KEY_VARIABLE, None)
    if key:
        data["spec"]["backend"]["api_key"] = key
    try:
        scenario = BenchmarkScenario.create(scenario=None, **data)
        asyncio.run(entrypoints.benchmark_generative_text(scenario, progress=False, console=None))
    except KeyboardInterrupt:
        print(f"stopped after {PointWriter.written} point(s)", flush=True)
        return 130
    except Exception as exc:  # GuideLLM's own errors: one line for deployer to show
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A benchmark's results as llm-d BenchmarkReport v0.2 documents, one per load point.

The layout is llm-d-benchmark's (``llmdbenchmark/analysis/benchmark_report/schema_v0_2.py`` and
``br_v0_2_json_schema.json``, https://github.com/llm-d/llm-d-benchmark at
8bc9f1ddd873a24f1657d6cca2e0d0fb6947dd36). A report there describes one benchmark at one load:
llm-d's own GuideLLM converter writes one report per stage, so :func:`benchmark_reports` gives one
per :class:`~deployer.bench.results.LoadPoint`, its index as ``scenario.load.standardized.stage``.
Pure: JSON-ready dicts for a file, nothing read or written.

What maps to what (v0.2 field <- deployer):

- ``version``: ``"0.2"``.
- ``run.uid``: a digest of the bench run and the stage (stable: the same result exports the same
  ids); ``run.eid`` (the experiment, shared by the run's reports): a digest of the deployment, the
  bench run's id, its start and the manifest digest. ``run.time.start``/``end``: the whole
  ``deployer bench`` run (a point's own start is not recorded); ``run.time.duration``: the point's
  measured window (warm-up excluded), ISO-8601. ``run.description``: deployment, load and tool,
  and for a partial run ``PARTIAL`` with the reason; ``run.keywords``: ``deployer`` and
  ``complete`` or ``partial``.
- ``scenario.stack[0]``: the engine. ``metadata.label`` the deployment, ``metadata.cfg_id`` the
  manifest digest (the hash of that component's configuration), ``metadata.description`` the model
  revision. ``standardized``: ``inference_engine`` (tool and release from
  :attr:`BenchResult.engine`, role ``replica``, 1 replica, ``model.name`` as given,
  ``accelerator.model``/``count``); without a model name (the result does not carry one) the
  engine is a ``generic`` component, since ``inference_engine`` requires the name.
  ``native.config.deployer``: deployment, manifest digest, model revision, bench run id.
- ``scenario.load``: ``metadata.cfg_id`` a digest of spec.benchmark as applied;
  ``standardized``: the tool and its version (from :attr:`BenchResult.tool`), ``source``
  (``random`` for synthetic prompts, ``sampled`` for a dataset), ``stage``, ``input_seq_len`` and
  ``output_seq_len`` from spec.benchmark.workload (a dataset's, or an unknown workload's, as
  ``other`` with the measured mean), ``concurrency`` or ``rate_qps``; ``native.config`` is
  spec.benchmark as applied.
- ``results.request_performance.aggregate``: ``requests.total`` (completed + errored +
  incomplete), ``failures``, ``incomplete``, ``input_length``/``output_length`` (count, mean per
  completed request); ``latency.time_to_first_token`` (ms), ``inter_token_latency`` (ms/token:
  the ITL of :mod:`deployer.manifest.performance`, which llm-d's GuideLLM converter also files
  there), ``request_latency`` (ms, E2E); ``throughput.request_rate`` (queries/s),
  ``input_token_rate``, ``output_token_rate``, ``total_token_rate`` (tokens/s). Each is a
  Statistics with ``mean`` and the percentiles measured (p50, p90, p99); throughputs are one
  figure per point, given as the ``mean``.
- ``results.observability.deployer``: what v0.2 has no field for, under the one results object
  that admits extra keys (llm-d's own ad-hoc metrics sit there too): the run's ``status``
  (``complete``/``partial``) and ``reason``, the SLO as applied (``slo``), whether the point
  ``meets_slo`` and what it ``missed``, ``attainment`` (fraction) and ``goodput`` (queries/s) as
  Statistics, and ``best``: whether this is the point deployer prices from.

Left empty: ``run.cid``, ``run.pid``, ``run.user``; the engine's parallelism (not recorded), its
args and environment; ``time_per_output_token`` and ``normalized_time_per_output_token``
(GuideLLM's TPOT includes the first token and is not kept); a latency metric with no mean (the
schema requires one); time series, per-component observability, profiling, component health;
the ``--cross-check`` points (another tool's measurement of the same load).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from deployer.bench.results import BenchResult, BenchStatus, LoadPoint, Quantiles
from deployer.manifest.performance import BenchmarkSpec, TokenCount, Tokens

VERSION = "0.2"
#: The schema version llm-d gives every component and load description.
COMPONENT_SCHEMA_VERSION = "0.0.1"

#: A report, ready for ``json.dumps``: written to a file, not passed around.
Report = dict[str, Any]


def benchmark_reports(result: BenchResult, *, model: str | None = None) -> list[Report]:
    """One BenchmarkReport v0.2 per load point of ``result``, in order; a run that finished no
    point gives one report with empty results (still saying why it is partial). ``model`` is the
    model's name (a hub id); without it the engine is a generic component."""
    if not result.points:
        return [_report(result, None, 0, model)]
    return [_report(result, point, stage, model) for stage, point in enumerate(result.points)]


def benchmark_report(result: BenchResult, stage: int, *, model: str | None = None) -> Report:
    """The BenchmarkReport v0.2 of load point ``stage`` (its index) of ``result``; IndexError
    when there is no such point."""
    return _report(result, result.points[stage], stage, model)


def _report(result: BenchResult, point: LoadPoint | None, stage: int, model: str | None) -> Report:
    eid = _digest(
        "deployer bench",
        result.deployment,
        str(result.run_id),
        _timestamp(result.started_at),
        result.manifest_digest,
    )
    results: Report = {}
    if point is not None:
        best = result.best()
        results = {
            "request_performance": {"aggregate": _aggregate(point)},
            "observability": {"deployer": _verdict(result, point, point == best)},
        }
    elif result.status != BenchStatus.COMPLETE:
        results = {"observability": {"deployer": _status(result)}}
    return {
        "version": VERSION,
        "run": _run(result, point, stage, eid),
        "scenario": {
            "stack": [_engine(result, model)],
            "load": _load(result, point, stage),
        },
        "results": results,
    }


def _run(result: BenchResult, point: LoadPoint | None, stage: int, eid: str) -> Report:
    time: Report = {
        "start": _timestamp(result.started_at),
        "end": _timestamp(result.finished_at),
    }
    if point is not None:
        time["duration"] = _duration(point.duration_seconds)
    load = point.label if point is not None else "no load point finished"
    description = f"{result.deployment}: {load} ({result.tool})"
    if result.status != BenchStatus.COMPLETE:
        description += f"; PARTIAL: {result.reason or 'stopped early'}"
    return {
        "uid": _digest(eid, str(stage)),
        "eid": eid,
        "time": time,
        "description": description,
        "keywords": ["deployer", result.status.value],
    }


def _engine(result: BenchResult, model: str | None) -> Report:
    tool, version = _name_and_version(result.engine)
    revision = result.model_revision or "not recorded"
    accelerator = {
        "model": result.accelerator,
        "count": result.accelerator_count,
        "parallelism": {},
    }
    standardized: Report
    if model is None:
        standardized = {
            "kind": "generic",
            "tool": tool,
            "tool_version": version,
            "accelerator": accelerator,
        }
    else:
        standardized = {
            "kind": "inference_engine",
            "tool": tool,
            "tool_version": version,
            "role": "replica",
            "replicas": 1,
            "model": {"name": model},
            "accelerator": accelerator,
        }
    return {
        "metadata": {
            "schema_version": COMPONENT_SCHEMA_VERSION,
            "label": result.deployment,
            "cfg_id": result.manifest_digest,
            "description": f"deployed by deployer; model revision {revision}",
        },
        "standardized": standardized,
        "native": {
            "config": {
                "deployer": {
                    "deployment": result.deployment,
                    "manifest_digest": result.manifest_digest,
                    "model_revision": result.model_revision,
                    "bench_run_id": result.run_id,
                }
            }
        },
    }


def _load(result: BenchResult, point: LoadPoint | None, stage: int) -> Report:
    tool, version = _name_and_version(result.tool)
    spec = _benchmark_spec(result)
    dataset = spec is not None and spec.workload.dataset is not None
    measured_in = _per_request(point, "input_tokens")
    measured_out = _per_request(point, "output_tokens")
    if spec is None or dataset:
        input_len, output_len = _other(measured_in), _other(measured_out)
    else:
        input_len = _sequence(spec.workload.prompt_tokens)
        output_len = _sequence(spec.workload.output_tokens)
    standardized: Report = {
        "tool": tool,
        "tool_version": version,
        "source": "sampled" if dataset else ("random" if spec is not None else "unknown"),
        "stage": stage,
        "input_seq_len": input_len,
        "output_seq_len": output_len,
    }
    if point is not None and point.kind == "rate":
        standardized["rate_qps"] = point.value
    elif point is not None:
        standardized["concurrency"] = round(point.value)
    return {
        "metadata": {
            "schema_version": COMPONENT_SCHEMA_VERSION,
            "cfg_id": _digest(json.dumps(result.workload, sort_keys=True, default=str)),
        },
        "standardized": standardized,
        "native": {"config": result.workload},
    }


def _aggregate(point: LoadPoint) -> Report:
    requests: Report = {
        "total": point.requests + point.errored + point.incomplete,
        "failures": point.errored,
        "incomplete": point.incomplete,
    }
    if point.requests:
        requests["input_length"] = {"units": "count", "mean": point.input_tokens / point.requests}
        requests["output_length"] = {
            "units": "count",
            "mean": point.output_tokens / point.requests,
        }
    latency = {
        name: stats
        for name, quantiles, units in (
            ("time_to_first_token", point.ttft_ms, "ms"),
            ("inter_token_latency", point.itl_ms, "ms/token"),
            ("request_latency", point.e2e_ms, "ms"),
        )
        if (stats := _statistics(quantiles, units)) is not None
    }
    total = point.input_tokens_per_second + point.output_tokens_per_second
    throughput = {
        "request_rate": {"units": "queries/s", "mean": point.requests_per_second},
        "input_token_rate": {"units": "tokens/s", "mean": point.input_tokens_per_second},
        "output_token_rate": {"units": "tokens/s", "mean": point.output_tokens_per_second},
        "total_token_rate": {"units": "tokens/s", "mean": total},
    }
    return {"requests": requests, "latency": latency, "throughput": throughput}


def _verdict(result: BenchResult, point: LoadPoint, best: bool) -> Report:
    verdict = _status(result)
    verdict.update(
        {
            "slo": result.slo,
            "meets_slo": point.meets_slo,
            "missed": list(point.missed),
            "attainment": _single(point.attainment, "fraction"),
            "goodput": _single(point.goodput, "queries/s"),
            "best": best,
        }
    )
    return verdict


def _status(result: BenchResult) -> Report:
    return {"status": result.status.value, "reason": result.reason}


def _statistics(quantiles: Quantiles, units: str) -> Report | None:
    if quantiles.mean is None:
        return None
    stats: Report = {"units": units, "mean": quantiles.mean}
    for percentile in ("p50", "p90", "p99"):
        if (value := quantiles.at(percentile)) is not None:
            stats[percentile] = value
    return stats


def _single(value: float | None, units: str) -> Report | None:
    return None if value is None else {"units": units, "mean": value}


def _sequence(tokens: Tokens) -> Report:
    if not isinstance(tokens, TokenCount):
        return {"distribution": "fixed", "value": tokens}
    if not tokens.stdev:
        return {"distribution": "fixed", "value": tokens.mean}
    length: Report = {"distribution": "gaussian", "value": tokens.mean, "std_dev": tokens.stdev}
    if tokens.min is not None:
        length["min"] = tokens.min
    if tokens.max is not None:
        length["max"] = tokens.max
    return length


def _other(measured: float | None) -> Report:
    return {"distribution": "other", "value": measured or 0}


def _per_request(point: LoadPoint | None, field: str) -> float | None:
    if point is None or not point.requests:
        return None
    return float(getattr(point, field)) / point.requests


def _benchmark_spec(result: BenchResult) -> BenchmarkSpec | None:
    if not result.workload:
        return None
    try:
        return BenchmarkSpec.model_validate(result.workload)
    except ValidationError:
        # Kept by an older deployer whose spec.benchmark read differently: the workload is
        # then reported as unknown rather than guessed.
        return None


def _name_and_version(text: str) -> tuple[str, str]:
    """'vllm bench serve 0.32.0' -> ('vllm bench serve', '0.32.0'); no version: 'unknown'."""
    name, _, version = text.rpartition(" ")
    if not name or not version[:1].isdigit():
        return text, "unknown"
    return name, version


def _timestamp(moment: datetime) -> str:
    """ISO-8601; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


__all__ = ["VERSION", "Report", "benchmark_report", "benchmark_reports"]

"""``deployer tune``'s search space: the trials a manifest's ``spec.tune`` declares, each a
deployment of its own, and the choice among them once measured. Pure: the API serves, measures
and destroys each trial.

Trial 0 is always the engine's defaults (the manifest as written, with none of the tuned
settings forced), so the gain is measured against them in the same run. The rest are the
combinations of the axes in :data:`~deployer.manifest.performance.TUNABLE` order, first values
first, up to ``maxTrials`` in all.

How each setting reaches vLLM: ``max_num_seqs`` and ``kv_cache_memory`` are the serving spec's own
fields (``maxNumSeqs``, ``kvCacheMemory``), ``max_num_batched_tokens`` a pass-through flag
(``args: {max-num-batched-tokens: N}``), ``cpu_threads_bind`` the CPU build's
``VLLM_CPU_OMP_THREADS_BIND`` (``env``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.bench.results import BenchResult, LoadPoint
from deployer.errors import UnsupportedError
from deployer.manifest.models import ModelDeployment, ServingSpec
from deployer.manifest.performance import TUNABLE

BIND_VARIABLE = "VLLM_CPU_OMP_THREADS_BIND"
BATCHED_FLAG = "max-num-batched-tokens"


@dataclass(frozen=True)
class Trial:
    """One combination of settings (empty: the engine's defaults)."""

    number: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return (
            "defaults"
            if not self.settings
            else ", ".join(f"{key}={value}" for key, value in self.settings.items())
        )

    def deployment(self, base: ModelDeployment, name: str) -> ModelDeployment:
        """``base`` with this trial's settings, named ``name`` (a deployment of its own)."""
        serving = base.spec.serving
        if self.settings and not isinstance(serving, ServingSpec):
            raise UnsupportedError(
                f"deployer tune searches vLLM's settings; {base.name} is served by "
                f"{serving.engine}",
                hint="remove spec.tune, or serve the model with engine: vllm",
            )
        changes: dict[str, Any] = {}
        args = dict(serving.args)
        env = dict(serving.env)
        for key, value in self.settings.items():
            if key == "max_num_seqs":
                changes["max_num_seqs"] = value
            elif key == "kv_cache_memory":
                changes["kv_cache_memory"] = value
            elif key == "max_num_batched_tokens":
                args[BATCHED_FLAG] = value
            elif key == "cpu_threads_bind":
                env[BIND_VARIABLE] = value
        changes.update(args=args, env=env)
        spec = base.spec.model_copy(update={"serving": serving.model_copy(update=changes)})
        metadata = base.metadata.model_copy(update={"name": name})
        return base.model_copy(update={"metadata": metadata, "spec": spec})

    def patch(self) -> dict[str, Any]:
        """The manifest patch that makes these settings permanent (camelCase, as written)."""
        serving: dict[str, Any] = {}
        for key, value in self.settings.items():
            if key == "max_num_seqs":
                serving["maxNumSeqs"] = value
            elif key == "kv_cache_memory":
                serving["kvCacheMemory"] = _bytes_text(int(value))
            elif key == "max_num_batched_tokens":
                serving.setdefault("args", {})[BATCHED_FLAG] = value
            elif key == "cpu_threads_bind":
                serving.setdefault("env", {})[BIND_VARIABLE] = value
        return {"spec": {"serving": serving}} if serving else {}


def trials(deployment: ModelDeployment) -> list[Trial]:
    """The trials of ``deployment``'s spec.tune: the defaults first, then each combination."""
    axes = deployment.spec.tune.axes()
    limit = deployment.spec.tune.max_trials
    found = [Trial(0)]
    names = [name for name in TUNABLE if name in axes]
    for values in itertools.product(*(axes[name] for name in names)):
        if len(found) >= limit:
            break
        found.append(Trial(len(found), dict(zip(names, values, strict=True))))
    return found


def score(result: BenchResult) -> float | None:
    """What a trial is ranked by: the goodput of its best SLO-meeting point (requests/s that
    meet every objective), else that point's output tokens/s when there is no SLO; None when
    no point meets the SLO."""
    best = result.best()
    if best is None:
        return None
    return _score(best)


def _score(point: LoadPoint) -> float:
    return point.goodput if point.goodput is not None else point.output_tokens_per_second


def winner(measured: Sequence[tuple[Trial, BenchResult]]) -> tuple[Trial, BenchResult] | None:
    """The trial with the highest score (the earliest of equals: the defaults win a tie)."""
    scored = [(score(result), trial.number, trial, result) for trial, result in measured]
    ranked = [entry for entry in scored if entry[0] is not None]
    if not ranked:
        return None
    best = max(ranked, key=lambda entry: (entry[0], -entry[1]))
    return best[2], best[3]


def _bytes_text(value: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)

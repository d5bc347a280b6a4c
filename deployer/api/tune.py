"""``deployer tune MANIFEST``: serve each trial of ``spec.tune`` on this machine, benchmark it
against ``spec.slo`` with ``spec.benchmark``'s load, destroy it, and say which settings won.

Each trial is a deployment of its own, ``<name>-tune-<n>`` (the engine's defaults are trial 0),
applied from a manifest written under ``<home>/tune/<name>/`` with relative paths still starting
beside the original; its benchmark is stored like any other (``deployer bench <name>-tune-<n>
--list``). The budget (``maxTrials``, ``maxMinutes``) is checked before each trial starts. Ctrl-C
stops the trial that runs (its engine destroyed), keeps what finished, and propagates. The
deployment the manifest describes is not touched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deployer import atomic
from deployer.api.bench import Benchmark, bench
from deployer.api.daytwo import destroy
from deployer.api.deploy import apply_loaded
from deployer.api.types import Result
from deployer.bench import tune as space
from deployer.errors import DeployerError, ManifestError, UnsupportedError
from deployer.events import EventBus, EventKind
from deployer.kube.render import dump_yaml
from deployer.manifest.loader import LoadedManifest, load_manifest
from deployer.settings import Settings


class TrialOutcome(Result):
    """One trial: its settings, and its stored benchmark or why it has none."""

    number: int
    name: str
    deployment: str
    settings: dict[str, Any]
    benchmark: Benchmark | None = None
    error: str | None = None
    #: Goodput at the SLO (requests/s meeting every objective) of its best SLO-meeting point,
    #: or that point's output tokens/s without an SLO; None when no point meets the SLO.
    score: float | None = None


class TuneResult(Result):
    """What ``deployer tune`` found."""

    deployment: str
    trials: list[TrialOutcome]
    #: The winning trial's number, and its manifest patch (empty: the defaults won).
    best: int | None
    patch: dict[str, Any]
    #: The winner's score over the defaults' (None when either has none).
    gain: float | None
    #: Why the search stopped before every trial ran ("budget: 30 minutes"), if it did.
    stopped: str | None = None

    def patch_yaml(self) -> str:
        return dump_yaml(self.patch) if self.patch else ""


def tune(path: Path, settings: Settings, events: EventBus) -> TuneResult:
    """Search ``path``'s spec.tune (see the module docstring). Raises ManifestError for a
    manifest without settings to try, UnsupportedError for a target other than this machine."""
    loaded = load_manifest(path)
    base = loaded.deployment
    if base.spec.target.kind != "local":
        raise UnsupportedError(
            f"deployer tune serves its trials on this machine; {base.name} targets "
            f"{base.spec.target.kind}",
            hint="tune a copy of the manifest with target kind: local on a host like the target",
        )
    if not base.spec.tune.axes():
        raise ManifestError(
            f"{base.name} declares no settings to try",
            location=loaded.location,
            hint="add spec.tune, e.g. tune: {maxNumSeqs: [4, 16], kvCacheMemory: [256MiB, 1GiB]}",
        )
    deadline = time.monotonic() + base.spec.tune.max_minutes * 60
    folder = settings.home / "tune" / base.name
    folder.mkdir(parents=True, exist_ok=True)
    outcomes: list[TrialOutcome] = []
    measured: list[tuple[space.Trial, Benchmark]] = []
    stopped = None
    for trial in space.trials(base):
        if time.monotonic() > deadline:
            stopped = f"budget: {base.spec.tune.max_minutes} minutes"
            break
        name = f"{base.name}-tune-{trial.number}"
        events.emit(
            EventKind.STEP_STARTED, f"trial {trial.number}: {trial.name} as {name}", step="tune"
        )
        served = trial.deployment(base, name)
        file = folder / f"trial-{trial.number}.yaml"
        document = served.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        atomic.write_text(file, dump_yaml(document))
        trial_loaded = LoadedManifest(
            deployment=served, path=file, line=1, index=0, origin=loaded.base_dir
        )
        outcome = TrialOutcome(
            number=trial.number, name=trial.name, deployment=name, settings=dict(trial.settings)
        )
        try:
            apply_loaded(trial_loaded, settings, events)
            stored = bench(name, settings, events, loaded=trial_loaded)
            outcome = outcome.model_copy(
                update={"benchmark": stored, "score": space.score(stored.result)}
            )
            measured.append((trial, stored))
        except DeployerError as exc:
            outcome = outcome.model_copy(update={"error": exc.message})
        finally:
            destroy(name, settings, events)
        outcomes.append(outcome)
    won = space.winner([(trial, stored.result) for trial, stored in measured])
    best = won[0] if won else None
    defaults = next((o.score for o in outcomes if o.number == 0), None)
    winner_score = next((o.score for o in outcomes if best and o.number == best.number), None)
    gain = winner_score / defaults if winner_score and defaults else None
    return TuneResult(
        deployment=base.name,
        trials=outcomes,
        best=best.number if best else None,
        patch=best.patch() if best else {},
        gain=gain,
        stopped=stopped,
    )

"""Build a quantized artifact (or find it in the store) and hold it to the quality gate.

:func:`prepare` is cheap and pure apart from reading small files: it checks the recipe against
the model's dimensions, checks the pinned texts' hashes and computes the cache key, so ``plan``
can say ``quantize: create`` or ``skip: artifact <key> in store`` without running anything.
:func:`ensure_artifact` does the work: it runs :mod:`deployer.quantize.worker` with the quantizer
environment's Python, streams its progress lines as events, and publishes the result atomically.
:func:`check_gate` refuses an artifact whose measured perplexity rose more than the manifest
allows; the artifact stays in the store (it is a faithful product of its recipe, and the numbers
are worth keeping) but is never served while the gate refuses it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployer import runner
from deployer.engines.install import exclusive
from deployer.errors import CommandError, PlanError, QualityGateError
from deployer.events import EventBus
from deployer.hub.source import ModelSourceFacts
from deployer.hub.store import ModelStore
from deployer.manifest.models import QuantizeSpec
from deployer.quantize import worker
from deployer.quantize.artifact import (
    ArtifactStore,
    QuantizeRecord,
    artifact_key,
    source_identity,
)
from deployer.quantize.pinned import (
    BUILTIN_CALIBRATION,
    BUILTIN_EVALUATION,
    ResolvedText,
    resolve,
)
from deployer.quantize.recipe import Recipe, build_recipe
from deployer.quantize.tool import find_quantizer, tool_versions
from deployer.settings import Settings

STEP = "quantize"
#: Tokens per window when measuring perplexity (the model's context is longer; this keeps the
#: measurement quick and the same for every model).
EVAL_SEQUENCE_LENGTH = 512
SEED = 0


@dataclass(frozen=True)
class QuantizeJob:
    """Everything a build needs, decided before any work: the recipe, the inputs, the key."""

    key: str
    recipe: Recipe
    source_path: Path
    source_identity: str
    calibration: ResolvedText
    samples: int
    sequence_length: int
    evaluation: ResolvedText
    max_increase: float
    artifact_path: Path

    @property
    def short_key(self) -> str:
        return self.key[:12]


def prepare(
    spec: QuantizeSpec,
    *,
    config: Mapping[str, object],
    source_path: Path,
    source_identity: str,
    base_dir: Path,
    settings: Settings,
) -> QuantizeJob:
    """The job for ``spec`` on the model described by ``config`` at ``source_path``.

    Raises :class:`PlanError` for a recipe the model cannot take (a group size that does not
    divide its dimensions) and :class:`ManifestError`/:class:`NotFoundError` for a calibration or
    evaluation text that is missing or does not match its sha256.
    """
    recipe = build_recipe(spec, config)
    calibration = resolve(
        spec.calibration,
        base_dir=base_dir,
        field="spec.quantize.calibration",
        builtins=BUILTIN_CALIBRATION,
    )
    evaluation = resolve(
        spec.gate.text,
        base_dir=base_dir,
        field="spec.quantize.gate.text",
        builtins=BUILTIN_EVALUATION,
    )
    key = artifact_key(
        source=source_identity,
        recipe=recipe,
        calibration_sha256=calibration.sha256,
        samples=spec.calibration.samples,
        sequence_length=spec.calibration.sequence_length,
        evaluation_sha256=evaluation.sha256,
        tools=tool_versions(),
    )
    return QuantizeJob(
        key=key,
        recipe=recipe,
        source_path=source_path,
        source_identity=source_identity,
        calibration=calibration,
        samples=spec.calibration.samples,
        sequence_length=spec.calibration.sequence_length,
        evaluation=evaluation,
        max_increase=spec.gate.max_perplexity_increase,
        artifact_path=ArtifactStore(settings.models_dir).path(key),
    )


def stored(job: QuantizeJob, settings: Settings) -> QuantizeRecord | None:
    """The record of ``job``'s artifact when the store has it."""
    return ArtifactStore(settings.models_dir).record(job.key)


def ensure_artifact(job: QuantizeJob, settings: Settings, events: EventBus) -> QuantizeRecord:
    """The artifact for ``job``: from the store, else built now (minutes). Idempotent.

    Blocks while another process builds the same key, then uses its result. Raises
    :class:`EngineNotInstalledError` when the quantizer is not installed and
    :class:`CommandError` (with the worker's output tail) when quantizing fails; neither leaves
    anything in the store.
    """
    store = ArtifactStore(settings.models_dir)
    record = store.record(job.key)
    if record is not None:
        events.log(f"skip: artifact {job.short_key} in store", step=STEP)
        return record
    env = find_quantizer(settings)
    with exclusive(store.lock_path(job.key), events, step=STEP):
        record = store.record(job.key)
        if record is not None:  # built by another process while we waited
            return record
        out = store.staging_dir(job.key)
        request = out / "request.json"
        request.write_text(json.dumps(_request(job, out / "model"), indent=2))
        log = out / "quantize.log"
        _run_worker(env.python, request, log, job, events)
        result_line = [
            line[len(worker.RESULT_PREFIX) :]
            for line in log.read_text(errors="replace").splitlines()
            if line.startswith(worker.RESULT_PREFIX)
        ]
        if not result_line:
            raise CommandError(
                "the quantizer finished without reporting its measurements",
                hint=f"read the log {log}",
            )
        measured = json.loads(result_line[-1])
        record = _record(job, measured)
        published = store.publish(job.key, out / "model", record)
        shutil.rmtree(out, ignore_errors=True)
        return published


def _run_worker(python: Path, request: Path, log: Path, job: QuantizeJob, events: EventBus) -> None:
    """Run the worker; each output line becomes a PROGRESS event (tqdm's ``n/total`` counts
    fill the bar). Raises :class:`CommandError` with the output's tail when it fails."""
    tail: deque[str] = deque(maxlen=25)

    def on_line(line: str) -> None:
        tail.append(line)
        counts = _COUNTS.search(line)
        done, total = (float(counts[1]), float(counts[2])) if counts else (0.0, None)
        events.progress(line[:200], step=STEP, completed=done, total=total)

    code = runner.stream(
        [str(python), str(Path(worker.__file__)), str(request)],
        log=log,
        on_line=on_line,
        env=_WORKER_ENV,
    )
    if code != 0:
        raise CommandError(
            f"quantizing with {job.recipe.describe()} failed (exit code {code}; full output "
            f"in {log})",
            details="\n".join(tail) or None,
            hint="read the log; then run the same command again (it starts over)",
        )


#: tqdm's progress counts in a line: ``Calibrating:  40%|████      | 12/30 [...]``.
_COUNTS = re.compile(r"\b(\d+)/(\d+) \[")


def check_gate(job: QuantizeJob, record: QuantizeRecord) -> None:
    """Refuse ``record`` when its perplexity rose more than ``job`` allows.

    Raises :class:`QualityGateError` with one line of measured numbers and a hint.
    """
    increase = record.perplexity_increase
    if increase <= job.max_increase:
        return
    raise QualityGateError(
        f"{job.recipe.method} raised perplexity {record.source_perplexity:.2f} -> "
        f"{record.quantized_perplexity:.2f} ({increase:+.0%}), the gate allows "
        f"+{job.max_increase:.0%} (artifact {job.short_key}, not deployed)",
        hint="raise spec.quantize.gate.maxPerplexityIncrease, calibrate on more or closer "
        "samples (spec.quantize.calibration), or use a gentler method (int8)",
    )


def describe_gate(job: QuantizeJob, record: QuantizeRecord) -> str:
    """``perplexity 9.81 -> 10.02 (+2%), gate +25%: pass``."""
    verdict = "pass" if record.perplexity_increase <= job.max_increase else "refused"
    return (
        f"perplexity {record.source_perplexity:.2f} -> {record.quantized_perplexity:.2f} "
        f"({record.perplexity_increase:+.1%}), gate +{job.max_increase:.0%}: {verdict}"
    )


#: The worker runs offline: no hub datasets, no telemetry, one tokenizer thread pool.
_WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def _request(job: QuantizeJob, out: Path) -> dict[str, object]:
    return {
        "source": str(job.source_path),
        "out": str(out),
        "recipe": job.recipe.as_json(),
        "calibration_file": str(job.calibration.path),
        "samples": job.samples,
        "sequence_length": job.sequence_length,
        "eval_file": str(job.evaluation.path),
        "eval_sequence_length": EVAL_SEQUENCE_LENGTH,
        "seed": SEED,
    }


def _record(job: QuantizeJob, measured: Mapping[str, object]) -> QuantizeRecord:
    versions = measured.get("versions")
    return QuantizeRecord(
        key=job.key,
        method=job.recipe.method,
        recipe=job.recipe.describe(),
        recipe_json=job.recipe.as_json(),
        source=str(job.source_path),
        source_identity=job.source_identity,
        calibration=job.calibration.label,
        calibration_sha256=job.calibration.sha256,
        calibration_samples=_int(measured, "calibration_samples"),
        sequence_length=job.sequence_length,
        evaluation=job.evaluation.label,
        evaluation_sha256=job.evaluation.sha256,
        evaluation_tokens=_int(measured, "eval_tokens"),
        source_perplexity=_float(measured, "source_perplexity"),
        quantized_perplexity=_float(measured, "quantized_perplexity"),
        source_bytes=_folder_bytes(job.source_path),
        artifact_bytes=0,
        quantize_seconds=_float(measured, "quantize_seconds"),
        total_seconds=_float(measured, "total_seconds"),
        versions={str(k): str(v) for k, v in versions.items()}
        if isinstance(versions, dict)
        else {},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files an engine loads (symlinks followed), hidden files left out."""
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


def _int(measured: Mapping[str, object], key: str) -> int:
    value = measured.get(key)
    if not isinstance(value, int):
        raise CommandError(f"the quantizer reported no {key}")
    return value


def _float(measured: Mapping[str, object], key: str) -> float:
    value = measured.get(key)
    if not isinstance(value, int | float):
        raise CommandError(f"the quantizer reported no {key}")
    return float(value)


def job_for(
    spec: QuantizeSpec, source: ModelSourceFacts, *, settings: Settings, base_dir: Path
) -> QuantizeJob | None:
    """The job for a manifest's model, or None while its ``config.json`` is not at hand (a hub
    model neither fetched nor locked with its config in the store: the key is decided after the
    fetch). The source's identity is its locked file hashes, else its folder's fingerprint."""
    config = _source_config(source, settings)
    if config is None:
        return None
    locked = {f.path: f.sha256 for f in source.locked.files} if source.locked else None
    return prepare(
        spec,
        config=config,
        source_path=source.path,
        source_identity=source_identity(locked, source.fingerprint),
        base_dir=base_dir,
        settings=settings,
    )


def _source_config(source: ModelSourceFacts, settings: Settings) -> dict[str, object] | None:
    """The model's config.json: from its folder, else from the store by the lock's hash."""
    candidates = [source.path / "config.json"]
    entry = source.locked.file("config.json") if source.locked else None
    if entry is not None:
        candidates.append(ModelStore(settings.models_dir).blob_path(entry.sha256))
    for path in candidates:
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise PlanError(f"cannot read the model's config {path}: {exc}") from exc
            return loaded if isinstance(loaded, dict) else None
    return None

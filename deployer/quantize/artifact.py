"""Quantized artifacts in the model store: their cache key, their folders and their records.

Layout under ``<cache>/models`` (beside the hub snapshots, see :mod:`deployer.hub.store`)::

    blobs/sha256/<hex>                      every file, content-addressed and read-only
    quantized/<key>/                        a folder an engine loads: symlinks into blobs/,
                                            plus .deployer-quantize.json, the record
    quantized/.staging/<key>.<pid>/         a quantizer's output while it runs

The key is a sha256 over everything that decides the artifact: the source model's identity (its
locked file hashes, else its folder's fingerprint), the recipe, the calibration text's sha256 with
the sample count and length, the evaluation text's sha256 (the record's perplexities are measured
on it), and the quantizer's pinned versions. The same inputs give the same key, so ``apply``
finds the artifact again instead of re-quantizing; any change gives a new key.

A folder appears under ``quantized/`` only complete, record included, by one rename: a quantizer
killed at any moment leaves a staging folder (removed by the next build of that key) and nothing
an engine could load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deployer import atomic
from deployer.digests import sha256_file
from deployer.hub.store import ModelStore
from deployer.quantize.recipe import Recipe

RECORD_NAME = ".deployer-quantize.json"


def artifact_key(
    *,
    source: str,
    recipe: Recipe,
    calibration_sha256: str,
    samples: int,
    sequence_length: int,
    evaluation_sha256: str,
    tools: Mapping[str, str],
) -> str:
    """The cache key: a sha256 of the canonical JSON of every input. Pure and deterministic."""
    canonical = json.dumps(
        {
            "source": source,
            "recipe": recipe.as_json(),
            "calibration": [calibration_sha256, samples, sequence_length],
            "evaluation": evaluation_sha256,
            "tools": dict(sorted(tools.items())),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def source_identity(locked_files: Mapping[str, str] | None, fingerprint: str) -> str:
    """The source's part of the key: a digest of (path, sha256) of the locked files when there
    is a lock, else the folder's fingerprint (paths, sizes and times of its files)."""
    if locked_files:
        listing = "\n".join(f"{path}\0{sha}" for path, sha in sorted(locked_files.items()))
        return "files:" + hashlib.sha256(listing.encode()).hexdigest()
    return "folder:" + fingerprint


@dataclass(frozen=True)
class ArtifactFile:
    sha256: str
    size: int


@dataclass(frozen=True)
class QuantizeRecord:
    """How an artifact was made and what it measured; ``.deployer-quantize.json``."""

    key: str
    method: str
    recipe: str
    recipe_json: dict[str, object]
    source: str
    source_identity: str
    calibration: str
    calibration_sha256: str
    calibration_samples: int
    sequence_length: int
    evaluation: str
    evaluation_sha256: str
    evaluation_tokens: int
    source_perplexity: float
    quantized_perplexity: float
    source_bytes: int
    artifact_bytes: int
    quantize_seconds: float
    total_seconds: float
    versions: dict[str, str]
    created_at: str
    files: dict[str, ArtifactFile] = field(default_factory=dict)

    @property
    def perplexity_increase(self) -> float:
        """The relative rise of perplexity, quantized against the source (0.02 is +2%)."""
        return self.quantized_perplexity / self.source_perplexity - 1

    @property
    def weight_bytes(self) -> int:
        """Bytes of the safetensors files: what the engine loads as weights."""
        return sum(f.size for path, f in self.files.items() if path.endswith(".safetensors"))


class ArtifactStore:
    """Quantized artifacts under ``<models>/quantized``; blobs shared with the hub store."""

    def __init__(self, models_dir: Path) -> None:
        self.models = ModelStore(models_dir)
        self.root = models_dir / "quantized"
        self.staging = self.root / ".staging"

    def path(self, key: str) -> Path:
        return self.root / key

    def record(self, key: str) -> QuantizeRecord | None:
        """The record of artifact ``key``, or None when it is not in the store (or unreadable)."""
        return read_record(self.path(key))

    def staging_dir(self, key: str) -> Path:
        """A fresh, empty folder for the quantizer to write ``key`` into.

        Removes earlier staging folders of the same key (left by an interrupted build); call it
        while holding the key's lock.
        """
        self.staging.mkdir(parents=True, exist_ok=True)
        for old in self.staging.glob(f"{key}.*"):
            shutil.rmtree(old, ignore_errors=True)
        folder = self.staging / f"{key}.{os.getpid()}"
        folder.mkdir()
        return folder

    def lock_path(self, key: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".{key}.lock"

    def publish(self, key: str, built: Path, record: QuantizeRecord) -> QuantizeRecord:
        """Move ``built``'s files into the blob store and publish the folder ``key`` with the
        record (its ``files`` filled in). Atomic: the folder appears complete or not at all.
        Idempotent: when ``key`` is already published, the existing record is returned."""
        existing = self.record(key)
        if existing is not None:
            shutil.rmtree(built, ignore_errors=True)
            return existing
        files: dict[str, ArtifactFile] = {}
        for item in sorted(p for p in built.rglob("*") if p.is_file()):
            relative = item.relative_to(built).as_posix()
            files[relative] = ArtifactFile(sha256_file(item), item.stat().st_size)
        total = sum(entry.size for entry in files.values())
        complete = replace(record, files=files, artifact_bytes=total)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for relative, entry in files.items():
                blob = self.models.add_blob(built / relative, entry.sha256)
                link = tmp / relative
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(blob, link.parent))
            atomic.write_json(tmp / RECORD_NAME, _record_json(complete))
            os.replace(tmp, self.path(key))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(built, ignore_errors=True)
        return complete


def read_record(folder: Path) -> QuantizeRecord | None:
    """The record in ``folder``, or None when absent or not a record deployer wrote."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        raw = json.loads((folder / RECORD_NAME).read_text())
        files = {path: ArtifactFile(**entry) for path, entry in raw.pop("files").items()}
        return QuantizeRecord(**raw, files=files)
    return None


def _record_json(record: QuantizeRecord) -> dict[str, object]:
    return asdict(record)

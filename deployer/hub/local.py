"""Models in a local folder (``spec.model.source: local``).

The folder must hold what the engine loads: ``config.json``, a tokenizer and safetensors weights.
The fingerprint (every file's path, size and modification time) is cheap to compute, so an
unchanged ``apply`` stays fast; content hashes belong to the lockfile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from deployer import inputs
from deployer.errors import ManifestError, NotFoundError
from deployer.hub import safety

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class LocalModelFacts:
    path: Path
    architecture: str | None
    files: int
    total_bytes: int
    fingerprint: str
    needs_remote_code: bool


def inspect_folder(path: Path, *, trust_remote_code: bool = False) -> LocalModelFacts:
    """Check that ``path`` is a servable model folder and describe it.

    Raises :class:`NotFoundError` when the folder or its ``config.json`` is missing,
    :class:`ManifestError` without a tokenizer, and :class:`UnsafeModelError` when the
    supply-chain policy refuses it (see :func:`deployer.hub.safety.verify_local_folder`).
    """
    if not path.is_dir():
        raise NotFoundError(
            f"model folder {path} does not exist",
            hint="fix spec.model.path; for the demo model run: deployer demo prepare",
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise NotFoundError(
            f"{path} has no config.json, so it is not a Hugging Face model folder",
            hint="point spec.model.path at the folder that holds config.json",
        )
    try:
        config = inputs.read_json_object(config_file, inputs.MODEL_CONFIG)
    except FileNotFoundError:
        raise NotFoundError(f"{config_file} disappeared while it was read") from None
    except ManifestError as exc:
        raise ManifestError(
            f"{config_file}: {exc.reason}",
            hint="a model folder's config.json is the transformers config saved with the weights",
        ) from None

    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ManifestError(
            f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)})",
            hint="save the tokenizer next to the weights (tokenizer.save_pretrained)",
        )
    # The supply-chain policy: safetensors headers parse, no pickle weights, no custom code
    # unless allowed.
    safety.verify_local_folder(path, allow_pickle=False, trust_remote_code=trust_remote_code)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    needs_remote_code = safety.needs_remote_code(config)
    digest = hashlib.sha256()
    total = 0
    for file in files:
        stat = file.stat()
        total += stat.st_size
        digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    architectures = config.get("architectures")
    first = architectures[0] if isinstance(architectures, list) and architectures else None
    return LocalModelFacts(
        path=path,
        architecture=first if isinstance(first, str) else None,
        files=len(files),
        total_bytes=total,
        fingerprint=digest.hexdigest(),
        needs_remote_code=needs_remote_code,
    )

"""Fill the model cache with exactly the locked files, every byte checked: the init container.

Runs with the vLLM image's own Python and huggingface_hub (no other dependency). Environment:
MODEL_REPO, MODEL_REVISION (the locked commit), MODEL_DIR (the folder the engine loads),
MODEL_FILES (a JSON list of {path, size, sha256}), HF_ENDPOINT and, for gated or private
repositories, HF_TOKEN (from a Secret).

Idempotent: a file already present with the right size and sha256 is kept, so a restarted pod
re-checks the cache instead of downloading it again. Any mismatch removes the file and exits 1,
so the engine never starts on bytes the lock does not name. With an empty file list (an unlocked
deployment) the whole revision is downloaded, unverified, and a warning says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path, PurePosixPath

CHUNK = 8 * 1024 * 1024
# What the engine needs from an unlocked repository: weights, configs, tokenizer.
UNLOCKED_PATTERNS = ["*.safetensors", "*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja"]


def main() -> int:
    repo = os.environ["MODEL_REPO"]
    revision = os.environ["MODEL_REVISION"]
    model_dir = Path(os.environ["MODEL_DIR"])
    files = json.loads(Path(os.environ["MODEL_FILES"]).read_text())
    model_dir.mkdir(parents=True, exist_ok=True)
    if not files:
        return fetch_unlocked(repo, revision, model_dir)
    for entry in files:
        path = safe_path(entry["path"])
        target = model_dir / path
        if matches(target, entry["size"], entry["sha256"]):
            log(f"ok (cached) {path}")
            continue
        download(repo, revision, str(path), model_dir)
        if not matches(target, entry["size"], entry["sha256"]):
            target.unlink(missing_ok=True)
            log(
                f"error: {path} does not match the lock "
                f"(size {entry['size']}, sha256 {entry['sha256']})"
            )
            return 1
        log(f"ok {path} ({entry['size']} bytes, sha256 {entry['sha256'][:12]})")
    log(f"{len(files)} file(s) of {repo}@{revision} verified in {model_dir}")
    return 0


def safe_path(raw: str) -> PurePosixPath:
    """A lock's relative path; anything that could leave the model folder is refused."""
    path = PurePosixPath(raw)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        raise SystemExit(f"error: refusing the file path {raw!r}: not inside the model")
    return path


def matches(target: Path, size: int, sha256: str) -> bool:
    if not target.is_file() or target.stat().st_size != size:
        return False
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def download(repo: str, revision: str, path: str, model_dir: Path) -> None:
    from huggingface_hub import hf_hub_download

    log(f"downloading {path}")
    hf_hub_download(repo_id=repo, filename=path, revision=revision, local_dir=model_dir)


def fetch_unlocked(repo: str, revision: str, model_dir: Path) -> int:
    from huggingface_hub import snapshot_download

    log(f"warning: {repo}@{revision} is not locked; downloading it unverified")
    snapshot_download(
        repo_id=repo, revision=revision, local_dir=model_dir, allow_patterns=UNLOCKED_PATTERNS
    )
    return 0


def log(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())

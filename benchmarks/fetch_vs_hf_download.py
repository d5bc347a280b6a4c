"""`deployer fetch` against `hf download` (huggingface_hub's own CLI), same repo, same endpoint.

The endpoint is deployer's mirror on loopback serving the demo model (about 270 MB), so the
network is not what is measured: the clients are. deployer also verifies every file's sha256 and
parses the safetensors headers; `hf download` checks sizes only. Each round uses empty caches.
Then a re-fetch of the cached, locked revision: bytes moved (aim: 0) and wall time (aim: < 1 s).
``--quick`` runs one round, for CI (no figure is asserted).

    .venv/bin/python benchmarks/fetch_vs_hf_download.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, median, table

from deployer.hub.mirror import Mirror, MirrorRepo

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEMO = Path.home() / ".cache" / "deployer" / "demo" / "SmolLM2-135M-Instruct"


def manifest(folder: Path, endpoint: str) -> Path:
    text = (ROOT / "model_manifests" / "demo" / "smollm2-135m-mirror.yaml").read_text()
    path = folder / "demo.yaml"
    path.write_text(text.replace("http://127.0.0.1:8089", endpoint))
    return path


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **env}, check=True, capture_output=True)
    return time.perf_counter() - started


def body_bytes(mirror: Mirror) -> int:
    return sum(r.bytes_sent for r in mirror.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, for CI")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    hf = shutil.which("hf", path=str(Path(sys.executable).parent))
    if hf is None:
        raise SystemExit("the hf command (huggingface_hub's CLI) is not in this virtualenv")
    ours, theirs, moved, hf_moved = [], [], [], []  # type: ignore[var-annotated]
    with Mirror([MirrorRepo.from_folder(REPO, DEMO)]) as mirror, tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        path = manifest(tmp, mirror.base_url)
        common = {"HF_HUB_DISABLE_TELEMETRY": "1", "DEPLOYER_HOME": str(tmp / "home")}
        deployer = [sys.executable, "-m", "deployer"]
        subprocess.run(
            [*deployer, "lock", str(path)],
            env={**os.environ, **common},
            check=True,
            capture_output=True,
        )
        cache = tmp / "cache"
        for round_ in range(rounds):

            def run_hf() -> None:
                shutil.rmtree(cache, ignore_errors=True)
                mirror.clear_requests()
                theirs.append(
                    timed_run(
                        [hf, "download", REPO, "--cache-dir", str(cache / "hf")],
                        {**common, "HF_ENDPOINT": mirror.base_url},
                    )
                )
                hf_moved.append(body_bytes(mirror))

            def run_ours() -> None:
                shutil.rmtree(cache, ignore_errors=True)
                mirror.clear_requests()
                ours.append(
                    timed_run(
                        [*deployer, "fetch", str(path)], {**common, "DEPLOYER_CACHE": str(cache)}
                    )
                )
                moved.append(body_bytes(mirror))

            # Alternate who goes first: the second writer pays for the first one's page cache.
            for step in (run_hf, run_ours) if round_ % 2 == 0 else (run_ours, run_hf):
                subprocess.run(["sync"], check=True)
                step()
        # The re-fetch: the revision is locked and in the store.
        fetch_env = {**os.environ, **common, "DEPLOYER_CACHE": str(cache)}
        subprocess.run(
            [*deployer, "fetch", str(path)], env=fetch_env, check=True, capture_output=True
        )
        mirror.clear_requests()
        refetch = timed_run(
            [*deployer, "fetch", str(path)], {**common, "DEPLOYER_CACHE": str(cache)}
        )
        refetch_bytes = body_bytes(mirror)
    size = sum(p.stat().st_size for p in DEMO.iterdir() if p.is_file())

    def line(seconds: float, moved_bytes: float) -> str:
        rate = size / seconds / 2**20
        return f"{seconds:.2f} s, {rate:.0f} MiB/s, {moved_bytes / 2**20:.1f} MiB moved"

    table(
        [
            ("hf download (median)", line(median(theirs), median(hf_moved))),
            ("deployer fetch (median)", line(median(ours), median(moved))),
            ("throughput ratio deployer / hf (aim >= 1.0)", f"{median(theirs) / median(ours):.2f}"),
            (
                "re-fetch of the locked, cached revision",
                f"{refetch:.2f} s, {refetch_bytes} B moved",
            ),
        ]
    )


if __name__ == "__main__":
    main()

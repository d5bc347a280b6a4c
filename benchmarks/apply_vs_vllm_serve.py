"""Time from `deployer apply` to a passing smoke check, against bare vLLM in the same run.

Baseline: the same engine, started by hand with the same arguments (`python -m
vllm.entrypoints.openai.api_server ...`, the CPU build's equivalent of `vllm serve`), timed to its
first `/health` 200 plus one chat request. deployer: `deployer apply` of the demo manifest with a
fresh home, which also validates, plans, supervises, records state and runs the smoke check.
Runs alternate between the two; prints each time, the medians and the ratio (aim: <= 1.10).
``--quick`` runs one round, for CI (no figure is asserted).

    .venv/bin/python benchmarks/apply_vs_vllm_serve.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from _common import DEMO, NAME, deployer, median, table, timed


def bare_vllm(home: Path) -> float:
    plan = json.loads(deployer("plan", str(DEMO), "-o", "json", home=home).stdout)
    engine_python = (
        Path(os.environ.get("DEPLOYER_CACHE", Path.home() / ".cache" / "deployer"))
        / "engines"
        / f"{plan['engine']['package']}-{plan['engine']['version']}"
        / "bin"
        / "python"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = list(plan["engine"]["args"])
    args[args.index("--port") + 1] = str(port)
    log = open(home / "bare-vllm.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(engine_python), "-m", plan["engine"]["module"], *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"bare vLLM exited; see {home / 'bare-vllm.log'}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        answer = httpx.post(
            f"{base}/v1/chat/completions",
            json={
                "model": NAME,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "temperature": 0,
                "max_tokens": 32,
            },
            timeout=120,
        ).json()["choices"][0]["message"]["content"]
        elapsed = time.perf_counter() - started
        assert "Paris" in answer, answer
        return elapsed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def deployer_apply(home: Path) -> float:
    elapsed = timed(lambda: deployer("apply", str(DEMO), home=home))
    deployer("destroy", NAME, home=home)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round, for CI")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    bare, ours = [], []
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            bare.append(bare_vllm(Path(a)))
            ours.append(deployer_apply(Path(b)))
        print(f"round {i + 1}: bare vLLM {bare[-1]:.1f}s, deployer apply {ours[-1]:.1f}s")
    ratio = median(ours) / median(bare)
    table(
        [
            ("bare vLLM to /health + 1 chat (median)", f"{median(bare):.1f} s"),
            ("deployer apply to smoke passed (median)", f"{median(ours):.1f} s"),
            ("what deployer adds", f"{median(ours) - median(bare):+.1f} s"),
            ("ratio deployer / bare (aim <= 1.10)", f"{ratio:.2f}"),
        ]
    )


if __name__ == "__main__":
    main()

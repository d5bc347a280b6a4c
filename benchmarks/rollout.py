"""A changed local redeploy as a rollout under client load: failed requests (aim 0) and the time
until the new revision serves, against a cold apply of the same demo in the same run (aim: at
most 1.2x).

Cold: `deployer apply` of the demo with a fresh home (HAProxy and the engine start), to its
passing smoke check. Rollout: while one client sends chat requests over one kept-alive
connection (every other one streamed, a quarter of a second apart), `deployer apply` of the demo
with a changed maxModelLen; "serves" is the moment the published endpoint's /v1/models first
reports the new context length (polled every 0.2 s), and the apply's own wall time (which also
waits for the old engine to drain and stop) is printed beside it. ``--quick`` runs one rollout,
for CI (no figure is asserted); the full run rolls out twice.

    .venv/bin/python benchmarks/rollout.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import DEMO, NAME, deployer, median, status, table, timed


class Load:
    """Requests one after another, a quarter of a second apart, until stopped; counts what
    failed."""

    def __init__(self, endpoint: str, key: str) -> None:
        self.endpoint, self.key = endpoint, key
        self.done = self.failed = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
        url = f"{self.endpoint}/chat/completions"
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(headers=headers, timeout=300) as client:
            while not self.stop.is_set():
                try:
                    if self.done % 2:
                        with client.stream("POST", url, json={**body, "stream": True}) as reply:
                            reply.raise_for_status()
                            if "data: [DONE]" not in "".join(reply.iter_text()):
                                raise RuntimeError("a stream ended early")
                    else:
                        client.post(url, json=body).raise_for_status()
                except Exception as exc:  # every failure counts
                    self.failed += 1
                    self.errors.append(repr(exc)[:160])
                self.done += 1
                self.stop.wait(0.25)


def context(endpoint: str, key: str) -> int | None:
    try:
        reply = httpx.get(
            f"{endpoint}/models", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        return int(reply.json()["data"][0]["max_model_len"])
    except (httpx.HTTPError, KeyError, ValueError, IndexError):
        return None


def rollout(
    home: Path, manifest: Path, endpoint: str, key: str, length: int
) -> tuple[float, float]:
    """Apply ``manifest`` and time until the endpoint serves ``length``, and the whole apply."""
    started = time.perf_counter()
    served: list[float] = []

    def poll() -> None:
        while not served and time.perf_counter() - started < 1800:
            if context(endpoint, key) == length:
                served.append(time.perf_counter() - started)
                return
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    deployer("apply", str(manifest), home=home)
    whole = time.perf_counter() - started
    poller.join(30)
    return (served[0] if served else float("nan")), whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one rollout, for CI")
    args = parser.parse_args()
    lengths = [1024] if args.quick else [1024, 1536]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        cold = timed(lambda: deployer("apply", str(DEMO), home=home))
        entry = status(home)
        endpoint = str(entry["endpoint"])
        key = deployer("key", NAME, home=home).stdout.strip()
        load = Load(endpoint, key)
        load.thread.start()
        served, whole = [], []
        try:
            for length in lengths:
                manifest = Path(tmp) / f"demo-{length}.yaml"
                manifest.write_text(
                    DEMO.read_text().replace("maxModelLen: 2048", f"maxModelLen: {length}")
                )
                to_serve, apply_time = rollout(home, manifest, endpoint, key, length)
                served.append(to_serve)
                whole.append(apply_time)
            after = status(home)
        finally:
            load.stop.set()
            load.thread.join(300)
            deployer("destroy", NAME, home=home, check=False)
    rows = [
        ("cold apply (HAProxy + engine, to a passing smoke check)", f"{cold:.1f} s"),
        (
            f"rollout under load, to the new revision serving (median of {len(served)})",
            f"{median(served):.1f} s",
        ),
        (
            "rollout apply's wall time (with the old engine's drain and stop)",
            f"{median(whole):.1f} s",
        ),
        ("ratio rollout-to-serving / cold apply", f"{median(served) / cold:.2f}x (aim <= 1.2x)"),
        ("requests during the run", f"{load.done} ({load.failed} failed; aim 0)"),
        ("endpoint unchanged", "yes" if after["endpoint"] == endpoint else "NO"),
    ]
    table(rows)
    for error in load.errors[:5]:
        print(f"  failed: {error}")


if __name__ == "__main__":
    main()

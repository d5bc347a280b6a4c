"""Rollouts that roll back, for real: HAProxy publishes the demo's port, vLLM's CPU build serves.

One deployment for the module, in file order: a first apply (HAProxy and an engine), an
unchanged apply (nothing touched), a changed ``maxModelLen`` rolled out while a client sends
streamed and plain chat requests over one kept-alive connection the whole time (not one fails,
the new engine serves after, the URL is the same), a change whose smoke check cannot pass (the old
engine keeps serving: same pid, same port), and destroy (no HAProxy, no engine, the port free).
Three engine starts in all.
"""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import Result, deployer

pytestmark = pytest.mark.engine
NAME = "smollm2-demo"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("rollout")
    yield path
    deployer("destroy", NAME, home=path)


def variant(folder: Path, name: str, *, max_model_len: int = 2048, contains: str = "Paris") -> Path:
    """The demo manifest as a user would edit it, written to ``folder/name``."""
    text = DEMO_MANIFEST.read_text()
    text = text.replace("maxModelLen: 2048", f"maxModelLen: {max_model_len}")
    text = text.replace("contains: Paris", f"contains: {contains}")
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def first_apply(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Result:
    manifests = tmp_path_factory.mktemp("manifests")
    return deployer("apply", str(variant(manifests, "demo.yaml")), home=home)


def status(home: Path) -> dict[str, object]:
    result = deployer("status", NAME, "--output", "json", home=home)
    assert result.code == 0, result.output
    [entry] = json.loads(result.stdout)
    return entry  # type: ignore[no-any-return]


def haproxies(home: Path) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "haproxy" and str(home) in " ".join(p.info["cmdline"] or [])
    ]


def in_folder(folder: Path) -> list[int]:
    """Processes working in ``folder``: a slot's supervisor and engine run there."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if Path(proc.cwd()) == folder:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def key(home: Path) -> str:
    return deployer("key", NAME, home=home).stdout.strip()


def served_context(endpoint: str, api_key: str) -> int:
    models = httpx.get(
        f"{endpoint}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    )
    models.raise_for_status()
    return int(models.json()["data"][0]["max_model_len"])


@dataclass
class Client:
    """Chat requests one after another over one kept-alive connection, every other one
    streamed, a quarter of a second apart (so the new engine's start is not starved of the
    machine's two cores), until stopped; each failure kept with its reason."""

    endpoint: str
    api_key: str
    done: int = 0
    streamed: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=300)

    def _run(self) -> None:
        body = {
            "model": NAME,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 8,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(headers=headers, timeout=300) as client:
            while not self.stop.is_set():
                url = f"{self.endpoint}/chat/completions"
                try:
                    if self.done % 2:
                        with client.stream("POST", url, json={**body, "stream": True}) as reply:
                            reply.raise_for_status()
                            text = "".join(reply.iter_text())
                        if "data: [DONE]" not in text:
                            raise AssertionError(f"a stream ended early: {text[-200:]!r}")
                        self.streamed += 1
                    else:
                        reply = client.post(url, json=body)
                        reply.raise_for_status()
                        reply.json()["choices"][0]["message"]["content"]
                except Exception as exc:  # every failure counts, whatever it is
                    self.failures.append(f"request {self.done}: {exc!r}"[:300])
                self.done += 1
                self.stop.wait(0.25)


def test_the_first_apply_starts_haproxy_and_the_engine(first_apply: Result, home: Path) -> None:
    assert first_apply.code == 0, first_apply.output
    assert "proxy: create: HAProxy publishes 127.0.0.1:" in first_apply.stdout
    entry = status(home)
    assert entry["healthy"] is True
    endpoint, engine_port = str(entry["endpoint"]), int(entry["engine_port"])  # type: ignore[call-overload]
    published = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    assert engine_port != published, "the engine listens privately, HAProxy on the endpoint"
    [master, *_] = haproxies(home)
    listening = {c.laddr.port for c in master.net_connections("inet") if c.status == "LISTEN"}
    listening |= {
        c.laddr.port
        for child in master.children()
        for c in child.net_connections("inet")
        if c.status == "LISTEN"
    }
    assert published in listening
    sock = home / "deployments" / NAME / "proxy" / "haproxy.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert httpx.get(f"{endpoint}/models", timeout=10).status_code == 401, "the engine's key"
    assert served_context(endpoint, key(home)) == 2048


def test_an_unchanged_apply_touches_neither_haproxy_nor_the_engine(
    first_apply: Result, home: Path, tmp_path: Path
) -> None:
    before = status(home)
    proxies = sorted(p.pid for p in haproxies(home))
    again = deployer("apply", str(variant(tmp_path, "demo.yaml")), home=home)
    assert again.code == 0, again.output
    assert "proxy: skip: HAProxy already publishes" in again.stdout
    assert "deploy: skip: already running" in again.stdout
    after = status(home)
    assert (after["pid"], after["engine_port"]) == (before["pid"], before["engine_port"])
    assert sorted(p.pid for p in haproxies(home)) == proxies


#: A rollout under load starts an engine on two shared cores while the old one serves: on a busy
#: machine that has taken several minutes, so its bounds are generous (a bound, not a pace).
ROLLOUT_TIMEOUT = 1800


@pytest.mark.timeout(ROLLOUT_TIMEOUT + 300)
def test_a_changed_engine_rolls_out_with_no_failed_request(
    first_apply: Result, home: Path, tmp_path: Path
) -> None:
    before = status(home)
    endpoint = str(before["endpoint"])
    proxies = sorted(p.pid for p in haproxies(home))
    client = Client(endpoint, key(home))
    client.start()
    try:
        planned = deployer("plan", str(variant(tmp_path, "a.yaml", max_model_len=1024)), home=home)
        assert planned.code == 0, planned.output
        assert "surge: the new engine starts beside the running one" in planned.stdout
        assert "switch" in planned.stdout
        result = deployer(
            "apply",
            str(variant(tmp_path, "a.yaml", max_model_len=1024)),
            home=home,
            timeout=ROLLOUT_TIMEOUT,
        )
        during = client.done
        # Requests after the switch too, on the same connection.
        while client.done < during + 4 and not client.failures:
            client.stop.wait(0.5)
    finally:
        client.finish()
    assert result.code == 0, result.output
    assert "rollout: check: surge: the new engine starts beside the running one" in result.stdout
    assert "--max-model-len 2048 -> 1024" in result.stdout
    assert "smoke checks against http://127.0.0.1:" in result.stdout
    assert "switch: update" in result.stdout
    assert client.failures == [], client.failures
    assert during > 4
    assert client.streamed > 2
    after = status(home)
    assert after["endpoint"] == endpoint, "clients keep their URL"
    assert after["pid"] != before["pid"]
    assert after["engine_port"] != before["engine_port"]
    assert not psutil.pid_exists(int(before["pid"]))  # type: ignore[call-overload]
    assert served_context(endpoint, key(home)) == 1024, "the new engine serves"
    assert sorted(p.pid for p in haproxies(home)) == proxies, "HAProxy was not restarted"


@pytest.mark.timeout(ROLLOUT_TIMEOUT + 300)
def test_a_new_engine_that_fails_its_smoke_check_rolls_back(
    first_apply: Result, home: Path, tmp_path: Path
) -> None:
    before = status(home)
    broken = variant(tmp_path, "b.yaml", max_model_len=1536, contains="Berlin")
    result = deployer("apply", str(broken), home=home, timeout=ROLLOUT_TIMEOUT)
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {NAME}: the new engine failed its smoke gate (0/1 smoke checks passed); rolled "
        f"back: the running engine keeps serving (pid {before['pid']}, port "
        f"{before['engine_port']})"
    ]
    assert "answer does not contain 'Berlin'" in result.stderr
    after = status(home)
    assert (after["pid"], after["engine_port"]) == (before["pid"], before["engine_port"])
    assert after["healthy"] is True
    assert after["manifest_digest"] == before["manifest_digest"]
    assert f"still serving manifest {str(before['manifest_digest'])[:12]}" in str(after["message"])
    assert after["last_run"]["status"] == "failed"  # type: ignore[index]
    assert served_context(str(after["endpoint"]), key(home)) == 1024, "the old engine serves"
    folder = home / "deployments" / NAME
    serving = json.loads((folder / "runtime.json").read_text())["engine_slot"]
    other = folder if serving == "b" else folder / "slot-b"
    assert not (folder / "candidate.json").exists()
    assert in_folder(other) == [], "the new engine and its supervisor were stopped"


@pytest.mark.timeout(ROLLOUT_TIMEOUT + 300)
def test_a_new_engine_that_misses_the_slo_in_its_gate_rolls_back(
    first_apply: Result, home: Path, tmp_path: Path
) -> None:
    """rollout.gate: slo with an SLO no engine meets (TTFT p99 of 1 ms): the new engine passes
    its smoke check, then GuideLLM's short load against it misses the SLO, and it is stopped."""
    before = status(home)
    path = variant(tmp_path, "slo.yaml", max_model_len=1280)
    text = path.read_text().replace("ttftMs: {p50: 400, p99: 1500}", "ttftMs: {p99: 1}")
    assert "ttftMs: {p99: 1}" in text
    path.write_text(text + "  rollout: {gate: slo, gateSeconds: 20}\n")

    result = deployer("apply", str(path), home=home, timeout=ROLLOUT_TIMEOUT)

    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "the new engine failed its SLO gate: concurrency 4: TTFT p99" in error, error
    assert "> 1 ms" in error, error
    after = status(home)
    assert (after["pid"], after["engine_port"]) == (before["pid"], before["engine_port"])
    assert after["manifest_digest"] == before["manifest_digest"]
    assert served_context(str(after["endpoint"]), key(home)) == 1024, "the old engine serves"


def test_destroy_stops_haproxy_and_the_engine_and_frees_the_port(
    first_apply: Result, home: Path
) -> None:
    entry = status(home)
    published = int(str(entry["endpoint"]).rsplit(":", 1)[1].split("/")[0])
    result = deployer("destroy", NAME, home=home)
    assert result.code == 0, result.output
    assert haproxies(home) == []
    assert not psutil.pid_exists(int(entry["pid"]))  # type: ignore[call-overload]
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", published))  # free again
    # The engine closed HAProxy's connections after each answer (option http-server-close), so
    # the kernel keeps TIME_WAIT entries on its port for a minute: nothing listens, and a server
    # (which sets SO_REUSEADDR, as vLLM and HAProxy do) can bind it.
    engine_port = int(entry["engine_port"])  # type: ignore[call-overload]
    assert not any(
        getattr(c.laddr, "port", None) == engine_port and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections("inet")
    )
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", engine_port))

"""The server and the CLI on one shared state store, for real: a throwaway PostgreSQL cluster
(Debian's ``postgresql``, on a loopback port) holds the state of a deployer home, and
``deployer server`` and every ``deployer`` command read it through ``DEPLOYER_STATE_URL``.

Two ``deployer apply`` processes of the llama.cpp demo start at the same moment and the server
is posted the same manifest as they reach their runs: exactly one of them deploys it, the others
are refused (another deployer is changing it) or, had they come after it, find it unchanged.
Either way the store keeps one record of the deployment, no run is left running, one engine
serves, and it says Paris. Then the dashboard, in Debian's Chromium, destroys it.
The tests run in file order.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from playwright.sync_api import Page

from deployer.agent.supervisor import MODULE as SUPERVISOR
from deployer.state import RunStatus, StateStore
from tests.conftest import MANIFESTS, ROOT
from tests.integration.cli import deployer
from tests.integration.serverdemo import free_port, log_of, start_server, token
from tests.integration.sshdemo import ask_capital
from tests.support.browser import BlockedRequests, screenshot
from tests.support.postgres import Cluster, start_cluster

pytestmark = pytest.mark.engine
MANIFEST = MANIFESTS / "demo" / "smollm2-135m-llamacpp.yaml"
NAME = "smollm2-llamacpp"
#: How a refused apply names the deployer that holds the deployment (the CLI's stderr after
#: "error: ", the API's 409 message).
REFUSED = re.compile(
    rf"deployment '{NAME}' is being changed by deployer process (?P<pid>\d+) "
    r"\(run (?P<run>\d+), apply, started "
)
#: The outcomes three applies at once may have, sorted: one deploys; each other one is refused
#: while that runs, or finds the deployment unchanged when it starts after that finished.
SHAPES = (
    ["deployed", "refused", "refused"],
    ["deployed", "refused", "unchanged"],
    ["deployed", "unchanged", "unchanged"],
)


@dataclass(frozen=True)
class Shared:
    """A deployer home whose state is a PostgreSQL database, and the server running on it."""

    home: Path
    #: What every ``deployer`` process gets: the state URL, and this checkout's code.
    env: dict[str, str]
    server: subprocess.Popen[str]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Attempt:
    """One of the racing applies: who, the pid its run is recorded with, what it reported."""

    who: str
    pid: int
    outcome: str
    output: str
    #: For a refused one: the pid and run id its refusal names.
    refused_by: tuple[int, int] | None = None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[Shared]:
    home = tmp_path_factory.mktemp("home")
    env = {
        "DEPLOYER_STATE_URL": cluster.new_database(),
        # The supervisor is started in the deployment's folder: the checkout's code must still
        # be the one imported (not another installed copy).
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    port = free_port()
    try:
        server = start_server(home, port, env)
        try:
            yield Shared(home=home, env=env, server=server, port=port)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        # Whatever happened, nothing keeps running; the cluster stops after this.
        deployer("destroy", NAME, home=home, env=env)
        left = kill_leftovers(home)
        assert left == [], f"still running after deployer destroy (now killed): {left}"


@pytest.fixture(scope="module")
def operator(shared: Shared) -> str:
    return token(shared.home, "operator", shared.env)


def status_all(shared: Shared) -> list[dict[str, Any]]:
    result = deployer("status", "--all", "-o", "json", home=shared.home, env=shared.env)
    assert result.code == 0, result.output
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def runs(shared: Shared, operator: str) -> list[dict[str, Any]]:
    """The deployment's runs, newest first, with their steps, as the API lists them."""
    response = httpx.get(
        f"{shared.base}/api/v1/deployments/{NAME}/runs",
        headers={"Authorization": f"Bearer {operator}"},
        timeout=30,
    )
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def step_status(run: dict[str, Any], name: str) -> str | None:
    return next((s["status"] for s in run["steps"] if s["name"] == name), None)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def supervisors(home: Path) -> list[psutil.Process]:
    """The supervisors of this home's deployments (their command line names its folder)."""
    folder = str(home / "deployments") + os.sep
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if SUPERVISOR in (argv := p.info["cmdline"] or [])
        and any(arg.startswith(folder) for arg in argv)
    ]


def kill_leftovers(home: Path) -> list[str]:
    """Kill this home's supervisors and their engines that are still running (one that no
    record names, say, should two applies both have started one); their command lines."""
    found: list[psutil.Process] = []
    for supervisor in supervisors(home):
        try:
            found += [supervisor, *supervisor.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    left = []
    for process in found:
        try:
            left.append(" ".join(process.cmdline()))
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(found, timeout=30)
    return left


def engines(home: Path) -> list[psutil.Process]:
    """llama.cpp servers under this home's supervisors (another home's, or another checkout's
    tests on this machine, are not counted)."""
    found = []
    for supervisor in supervisors(home):
        try:
            children = supervisor.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:
                if "llama_cpp.server" in child.cmdline():
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
    return found


Started = list[tuple[subprocess.Popen[str], Path, Path]]


def start_applies(home: Path, env: dict[str, str]) -> Started:
    """Two ``deployer apply`` processes of the manifest, started at once; each with the files
    its stdout and stderr go to."""
    started = []
    for i in (1, 2):
        out, err = home / f"apply-{i}.out", home / f"apply-{i}.err"
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer", "apply", str(MANIFEST)],
            env={**os.environ, "DEPLOYER_HOME": str(home), **env},
            stdout=out.open("w"),
            stderr=err.open("w"),
            text=True,
        )
        started.append((proc, out, err))
    return started


def time_to_run(cluster: Cluster, home: Path) -> float:
    """Seconds the first of two ``deployer apply`` processes started at once takes to reach its
    run and be refused, on a database of their own where this process holds the deployment's
    run."""
    url = cluster.new_database()
    with StateStore(url) as store:
        held = store.start_run(NAME, "apply")
        began = time.monotonic()
        (home / "calibration").mkdir()
        procs = start_applies(home / "calibration", {"DEPLOYER_STATE_URL": url})
        seconds = []
        for proc, out, err in procs:
            proc.wait(timeout=120)
            seconds.append(time.monotonic() - began)
            refused = REFUSED.search(err.read_text())
            output = out.read_text() + err.read_text()
            assert proc.returncode == 1, output
            assert refused is not None, output
            assert (int(refused["pid"]), int(refused["run"])) == (os.getpid(), held.id)
        store.finish_run(held.id, RunStatus.SUCCEEDED)
        assert [r.id for r in store.list_runs(NAME)] == [held.id], "a refused apply ran"
    return min(seconds)


def _cli_attempt(who: str, proc: subprocess.Popen[str], out: Path, err: Path) -> Attempt:
    stdout, stderr = out.read_text(), err.read_text()
    output = f"{who} (exit {proc.returncode}):\n{stdout}{stderr}"
    assert "Traceback" not in output, output
    if proc.returncode == 0 and f"{NAME} deployed" in stdout:
        return Attempt(who, proc.pid, "deployed", output)
    if proc.returncode == 0 and f"{NAME} unchanged" in stdout:
        return Attempt(who, proc.pid, "unchanged", output)
    refused = REFUSED.search(stderr)
    assert proc.returncode == 1, output
    assert refused is not None, output
    assert f"error: {refused.group(0)}" in stderr, output
    assert "hint: wait for run " in stderr, output
    return Attempt(who, proc.pid, "refused", output, (int(refused["pid"]), int(refused["run"])))


def _server_attempt(shared: Shared, operator: str, response: httpx.Response) -> Attempt:
    output = f"server (HTTP {response.status_code}): {response.text}"
    if response.status_code == 409:
        body = response.json()
        assert body["code"] == "run_in_progress", output
        refused = REFUSED.match(body["message"])
        assert refused is not None, output
        by = (int(refused["pid"]), int(refused["run"]))
        return Attempt("server", shared.server.pid, "refused", output, by)
    assert response.status_code == 202, output
    run_id = response.json()["run_id"]
    deadline = time.monotonic() + 600
    while True:
        run = httpx.get(
            f"{shared.base}/api/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {operator}"},
            timeout=30,
        ).json()
        if run["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    output += f"\nrun {run_id}: {run['status']} {run['error']}: " + ", ".join(
        f"{s['name']} {s['status']}" for s in run["steps"]
    )
    assert run["status"] == "succeeded", output
    deploy = step_status(run, "deploy")
    assert deploy in ("done", "skipped"), output
    return Attempt(
        "server", shared.server.pid, "deployed" if deploy == "done" else "unchanged", output
    )


def test_two_cli_applies_and_a_posted_one_at_once_deploy_it_once(
    cluster: Cluster, shared: Shared, operator: str
) -> None:
    assert status_all(shared) == []
    planned = deployer("plan", str(MANIFEST), "-o", "json", home=shared.home, env=shared.env)
    assert planned.code == 0, planned.output
    endpoint = json.loads(planned.stdout)["endpoint"]
    # The server's apply is posted when the racing CLIs reach their runs, so that any of the
    # three may be first.
    lead = time_to_run(cluster, shared.home)

    posted: list[httpx.Response] = []

    def post() -> None:
        time.sleep(lead)
        posted.append(
            httpx.post(
                f"{shared.base}/api/v1/apply",
                content=MANIFEST.read_text(),
                headers={"Authorization": f"Bearer {operator}", "Content-Type": "application/yaml"},
                timeout=120,
            )
        )

    poster = threading.Thread(target=post)
    clis: Started = []
    try:
        clis = start_applies(shared.home, shared.env)
        poster.start()
        for cli, _, _ in clis:
            cli.wait(timeout=600)
        poster.join(timeout=180)
    finally:
        for cli, _, _ in clis:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    assert posted, "the posted apply did not answer"
    attempts = [
        *(_cli_attempt(f"cli-{i}", *cli) for i, cli in enumerate(clis, 1)),
        _server_attempt(shared, operator, posted[0]),
    ]
    shown = "\n\n".join(a.output for a in attempts)
    print(f"posted {lead:.2f} s after the CLIs:", [(a.who, a.outcome) for a in attempts])
    assert sorted(a.outcome for a in attempts) in SHAPES, shown
    [winner] = [a for a in attempts if a.outcome == "deployed"]

    # The runs as recorded: none left running; the winner's deployed it, each "unchanged" one
    # began after that had finished, and a refused one recorded no run.
    recorded = runs(shared, operator)
    assert [r["status"] for r in recorded] == ["succeeded"] * len(recorded), recorded
    assert {r["operation"] for r in recorded} == {"apply"}, recorded
    [deploying] = [r for r in recorded if step_status(r, "deploy") == "done"]
    assert deploying["pid"] == winner.pid, (deploying, shown)
    skipping = [r for r in recorded if r is not deploying]
    assert all(step_status(r, "deploy") == "skipped" for r in skipping), recorded
    unchanged = [a for a in attempts if a.outcome == "unchanged"]
    assert sorted(r["pid"] for r in skipping) == sorted(a.pid for a in unchanged), recorded
    for run in skipping:
        assert when(run["started_at"]) >= when(deploying["finished_at"]), recorded
    by_run = {r["id"]: r["pid"] for r in recorded}
    for refused in (a for a in attempts if a.outcome == "refused"):
        assert refused.refused_by is not None
        pid, run_id = refused.refused_by
        assert by_run.get(run_id) == pid != refused.pid, (refused.output, recorded)

    # One record of the deployment, healthy, whoever applied it.
    [entry] = status_all(shared)
    assert (entry["name"], entry["status"], entry["healthy"]) == (NAME, "healthy", True), entry
    assert entry["endpoint"] == endpoint, "the planned endpoint"
    assert entry["last_run"]["id"] == max(by_run), entry

    # One engine serving it, on the planned port, and it knows its geography.
    [engine] = engines(shared.home)
    assert engine.pid == entry["pid"]
    port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    # The local target publishes the planned port through its HAProxy; the engine listens on
    # a private port of its own (issue 15's rollouts).
    private = int(entry["engine_port"])
    assert private != port
    assert {c.laddr.port for c in engine.net_connections() if c.status == "LISTEN"} == {private}
    key = deployer("key", NAME, home=shared.home, env=shared.env).stdout.strip()
    assert "Paris" in ask_capital(endpoint, key, NAME)


def test_the_dashboard_in_a_browser_destroys_it(
    shared: Shared,
    operator: str,
    loopback_page: Page,
    blocked_requests: BlockedRequests,
    request: pytest.FixtureRequest,
) -> None:
    """In Debian's Chromium: log in with an operator token, destroy the deployment from its
    page (accepting the confirmation), watch the run succeed; the CLI, reading the same
    database, sees it destroyed, and its engine and port are gone."""
    [entry] = status_all(shared)
    assert entry["status"] == "healthy", entry
    port = int(str(entry["endpoint"]).rsplit(":", 1)[1].split("/")[0])
    engine = psutil.Process(int(entry["pid"]))
    page = loopback_page

    page.goto(f"{shared.base}/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", operator)
    page.click("button[type=submit]")
    row = page.locator(f"tr[data-name={NAME}]")
    row.wait_for()
    assert "healthy" in row.inner_text()
    screenshot(page, request, "-fleet")

    page.goto(f"{shared.base}/deployments/{NAME}")
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#destroy")
    page.wait_for_selector("#run-status.status-succeeded", timeout=120_000)
    screenshot(page, request, "-destroy-run")
    assert dialogs == [f"Destroy {NAME}? Its history stays."]
    assert "destroy (delete): done" in page.inner_text("#steps")

    [after] = status_all(shared)
    assert (after["name"], after["status"]) == (NAME, "destroyed"), after
    assert after["last_run"]["operation"] == "destroy", after
    assert after["last_run"]["status"] == "succeeded", after
    [newest, *_] = runs(shared, operator)
    assert (newest["operation"], newest["pid"]) == ("destroy", shared.server.pid), newest
    assert not engine.is_running()
    assert supervisors(shared.home) == []
    # Free again for a server to take: HAProxy closed idle client connections first, so the
    # kernel may keep TIME_WAIT entries on the port for a minute; a server sets SO_REUSEADDR.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    assert not any(
        c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections()
    )
    assert not (shared.home / "deployments" / NAME / "api-key").exists()
    log = log_of(shared.home, shared.port).read_text()
    assert "Traceback" not in log
    assert operator not in log
    assert blocked_requests.urls == []  # the pages asked nothing of any other host

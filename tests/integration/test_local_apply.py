"""The demo end to end, for real: vLLM's CPU build serving SmolLM2-135M-Instruct on this machine.

One deployment is applied once for the module and the tests walk through a user's day with it:
ask it, apply again, change it, break it, kill its engine, destroy it. They run in file order.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.sync_api import Page

from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import Result, deployer
from tests.integration.serverdemo import free_port, start_server, token
from tests.support.browser import BlockedRequests, screenshot

pytestmark = pytest.mark.engine
NAME = "smollm2-demo"
#: Terminal control sequences (cursor moves between refreshes of a live table).
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    yield path
    deployer("destroy", NAME, home=path)


@pytest.fixture(scope="module")
def planned(home: Path) -> Result:
    """``deployer plan`` before the first apply, as a new user would run it."""
    return deployer("plan", str(DEMO_MANIFEST), "-o", "json", home=home)


@pytest.fixture(scope="module")
def first_apply(home: Path, planned: Result) -> Result:
    return deployer("apply", str(DEMO_MANIFEST), home=home)


def status(home: Path) -> dict[str, object]:
    result = deployer("status", NAME, "--output", "json", home=home)
    assert result.code == 0, result.output
    [entry] = json.loads(result.stdout)
    return entry  # type: ignore[no-any-return]


def ask(endpoint: str, key: str, question: str = "What is the capital of France?") -> str:
    response = httpx.post(
        f"{endpoint}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": NAME,
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": 32,
        },
        timeout=120,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def variant(tmp_path: Path, **serving: object) -> Path:
    """The demo manifest with changed serving settings or smoke checks, as a user would edit it."""
    text = DEMO_MANIFEST.read_text()
    if "maxModelLen" in serving:
        text = text.replace("maxModelLen: 2048", f"maxModelLen: {serving['maxModelLen']}")
    if "contains" in serving:
        text = text.replace("contains: Paris", f"contains: {serving['contains']}")
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path


def test_apply_deploys_and_the_model_says_paris(first_apply: Result, home: Path) -> None:
    assert first_apply.code == 0, first_apply.output
    assert "Traceback" not in first_apply.output
    assert "pass: chat: What is the capital of France?" in first_apply.stdout
    entry = status(home)
    assert entry["status"] == "healthy"
    assert entry["healthy"] is True
    key = deployer("key", NAME, home=home).stdout.strip()
    assert key.startswith("dk-")
    assert "Paris" in ask(str(entry["endpoint"]), key)


def test_the_plans_endpoint_is_the_one_apply_used(
    planned: Result, first_apply: Result, home: Path
) -> None:
    assert planned.code == 0, planned.output
    assert json.loads(planned.stdout)["endpoint"] == status(home)["endpoint"]


def test_the_endpoint_requires_the_key(first_apply: Result, home: Path) -> None:
    endpoint = str(status(home)["endpoint"])
    assert httpx.get(f"{endpoint}/models", timeout=10).status_code == 401
    wrong = httpx.get(f"{endpoint}/models", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert endpoint.startswith("http://127.0.0.1:")


def test_the_key_is_owner_only_and_appears_nowhere_else(first_apply: Result, home: Path) -> None:
    key_file = home / "deployments" / NAME / "api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key not in first_apply.output
    written = [p for p in home.rglob("*") if p.is_file() and p != key_file]
    assert any(p.name == "state.db" for p in written)
    assert any(p.name == "engine.log" for p in written)
    for path in written:
        assert key.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    engine = psutil.Process(int(status(home)["pid"]))  # type: ignore[arg-type]
    assert key not in " ".join(engine.cmdline()), "the API key is visible in ps"


def test_second_apply_changes_nothing(first_apply: Result, home: Path) -> None:
    before = status(home)["pid"]
    again = deployer("apply", str(DEMO_MANIFEST), home=home)
    assert again.code == 0, again.output
    assert "deploy: skip: already running" in again.stdout
    assert f"{NAME} unchanged" in again.stdout
    assert status(home)["pid"] == before


def test_status_watch_shows_the_engines_load_while_it_answers(
    first_apply: Result, home: Path
) -> None:
    """`deployer status --watch`: the live table reads the engine's own metrics, and the
    generated-token rate moves while requests are answered."""
    entry = status(home)
    key = deployer("key", NAME, home=home).stdout.strip()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "deployer", "status", "--watch", "--interval", "0.5"],
        env={
            **os.environ,
            "DEPLOYER_HOME": str(home),
            "COLUMNS": "200",
            # Every refresh drawn into the pipe (as on a terminal), so the test can wait for one
            # under load instead of guessing how long the engine takes to answer /metrics.
            "TTY_COMPATIBLE": "1",
            "NO_COLOR": "1",
            # Should it ever hang, SIGABRT prints where it was.
            "PYTHONFAULTHANDLER": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rows: list[list[str]] = []
    lines: list[str] = []

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            line = ANSI.sub("", line)
            lines.append(line)
            if line.strip().startswith(NAME):
                rows.append(line.split())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    asking = threading.Event()
    asking.set()

    def keep_asking() -> None:
        while asking.is_set():
            ask(str(entry["endpoint"]), key, "Count to twenty.")

    def moving(row: list[str]) -> bool:
        return row[7] != "-" and float(row[7]) > 0

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(moving(row) for row in rows):
            time.sleep(0.2)
    finally:
        # Interrupted mid-answer: the table it leaves is the last refresh, under load.
        watcher.send_signal(signal.SIGINT)
        asking.clear()
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.send_signal(signal.SIGABRT)
            watcher.wait(timeout=30)
            reader.join(timeout=10)
            pytest.fail("status --watch did not end on Ctrl-C; it was here:\n" + "".join(lines))
        finally:
            asker.join(timeout=120)
    reader.join(timeout=10)
    output = "".join(lines)
    assert watcher.returncode == 0, output
    assert "Traceback" not in output
    header = next(line for line in lines if "tokens/s" in line)
    assert header.split()[4:8] == ["running", "waiting", "KV", "cache"]
    row = next((row for row in rows if moving(row)), rows[-1] if rows else [])
    assert row[1:3] == ["healthy", "healthy"], output
    assert "metrics:" not in row, row  # the scrape worked
    assert row[6].endswith("%"), row  # KV cache use
    assert moving(row), row  # generated tokens per second since the refresh before
    assert (row[9], row[11]) == ("ms", "ms"), row  # mean TTFT and ITL from the histograms


def test_the_server_shows_the_demo_and_runs_its_smoke_check(
    first_apply: Result, home: Path
) -> None:
    """As an operator would: `deployer server`, a viewer token that lists the demo and cannot
    destroy it, an operator token that runs the smoke check and follows the run's events."""
    viewer = deployer("server", "token", "create", "--role", "viewer", "--name", "ci", home=home)
    operator = deployer(
        "server", "token", "create", "--role", "operator", "--name", "op", home=home
    )
    assert viewer.code == 0, viewer.output
    tokens = [viewer.stdout.strip(), operator.stdout.strip()]
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    server = start_server(home, port)
    try:
        as_viewer = {"Authorization": f"Bearer {tokens[0]}"}
        listed = httpx.get(f"{base}/deployments", headers=as_viewer, timeout=30).json()
        [demo] = listed["items"]
        assert (demo["name"], demo["status"], demo["healthy"]) == (NAME, "healthy", True)
        assert demo["endpoint"] == status(home)["endpoint"]
        refused = httpx.post(f"{base}/deployments/{NAME}/destroy", headers=as_viewer, timeout=30)
        assert refused.status_code == 403
        assert status(home)["running"] is True

        as_operator = {"Authorization": f"Bearer {tokens[1]}"}
        started = httpx.post(f"{base}/deployments/{NAME}/smoke", headers=as_operator, timeout=60)
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        with httpx.stream(
            "GET", f"{base}/runs/{run_id}/events", headers=as_viewer, timeout=120
        ) as stream:
            text = "".join(stream.iter_text())
        end = json.dumps({"run_id": run_id, "status": "succeeded"})
        assert f"event: end\ndata: {end}" in text, text
        run = httpx.get(f"{base}/runs/{run_id}", headers=as_viewer, timeout=30).json()
        assert [(s["name"], s["status"]) for s in run["steps"]] == [("smoke", "done")]
        assert any("pass: chat" in e["message"] for e in run["events"]), run["events"]

        # The scraper saw the engine answer: the time series has the smoke check's tokens.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            plot = httpx.get(
                f"{base}/deployments/{NAME}/metrics?seconds=600", headers=as_viewer, timeout=30
            ).json()
            if any(v for v in plot["tokens_per_second"] if v):
                break
            time.sleep(1)
        assert any(v for v in plot["tokens_per_second"] if v), plot
        assert all(v is not None and 0 <= v <= 1 for v in plot["kv_usage"]), plot
        assert plot["errors"] == []
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = (home / f"server-{port}.log").read_text()
    assert "Traceback" not in log
    for value in tokens:
        assert value not in log
    assert f'POST /api/v1/deployments/{NAME}/destroy HTTP/1.1" 403' in log


def test_a_run_cut_off_by_a_killed_server_reads_interrupted(
    first_apply: Result, home: Path
) -> None:
    operator = token(home, "operator")
    port = free_port()
    server = start_server(home, port)
    try:
        started = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/deployments/{NAME}/smoke",
            headers={"Authorization": f"Bearer {operator}"},
            timeout=60,
        )
        assert started.status_code == 202, started.text
    finally:
        server.kill()  # mid-run: the smoke check takes a second or more
        server.wait(timeout=30)
    [entry] = json.loads(deployer("status", "--all", "-o", "json", home=home).stdout)
    assert entry["last_run"]["id"] == started.json()["run_id"]
    assert entry["last_run"]["status"] == "interrupted", entry["last_run"]
    assert "is gone" in entry["last_run"]["error"]


def test_a_failing_smoke_check_fails_apply_and_marks_unhealthy(
    first_apply: Result, home: Path, tmp_path: Path
) -> None:
    before = status(home)["pid"]
    result = deployer("apply", str(variant(tmp_path, contains="Berlin")), home=home)
    assert result.code == 1
    assert "0/1 smoke checks passed" in result.stderr
    assert "answer does not contain 'Berlin'" in result.stderr
    assert "Traceback" not in result.output
    entry = status(home)
    assert entry["status"] == "unhealthy"
    assert entry["pid"] == before, "smoke checks alone must not restart the engine"

    again = deployer("smoke", NAME, "--manifest", str(DEMO_MANIFEST), home=home)
    assert again.code == 0, again.output
    assert "1/1 smoke checks passed" in again.stdout
    assert status(home)["status"] == "healthy"


def test_a_changed_manifest_restarts_the_engine(
    first_apply: Result, home: Path, tmp_path: Path
) -> None:
    before = status(home)
    result = deployer("apply", str(variant(tmp_path, maxModelLen=1024)), home=home)
    assert result.code == 0, result.output
    assert "--max-model-len 2048 -> 1024" in result.stdout
    after = status(home)
    assert after["pid"] != before["pid"]
    assert not psutil.pid_exists(int(before["pid"]))  # type: ignore[arg-type]
    assert after["endpoint"] == before["endpoint"], "the port is kept across restarts"
    key = deployer("key", NAME, home=home).stdout.strip()
    assert "Paris" in ask(str(after["endpoint"]), key)


def test_the_dashboard_in_a_browser_runs_the_smoke_check_and_rolls_back(
    first_apply: Result,
    home: Path,
    loopback_page: Page,
    blocked_requests: BlockedRequests,
    request: pytest.FixtureRequest,
) -> None:
    """After the changed manifest above, in Debian's Chromium: log in with a token, see the demo
    healthy with its manifest digest and live plots, run the smoke check and watch its run, roll
    back to the first revision (the engine restarts with it). Screenshots in test-artifacts/."""
    operator = token(home, "operator")
    headers = {"Authorization": f"Bearer {operator}"}
    before = status(home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, port)
    page = loopback_page
    try:
        listed = httpx.get(f"{base}/api/v1/deployments/{NAME}/revisions", headers=headers)
        numbers = [r["number"] for r in listed.json()["items"]]
        assert numbers[-1] == 1, numbers
        latest = numbers[0]
        diff = httpx.get(
            f"{base}/api/v1/deployments/{NAME}/revisions/1/diff/{latest}", headers=headers
        ).json()["diff"]
        assert "-    maxModelLen: 2048" in diff, diff

        page.goto(f"{base}/")
        assert page.url.endswith("/login")
        page.fill("input[name=token]", operator)
        page.click("button[type=submit]")
        row = page.locator(f"tr[data-name={NAME}]")
        row.wait_for()
        assert "healthy" in row.inner_text()
        assert str(before["manifest_digest"])[:19] in row.inner_text()
        # What runs: the model folder the engine was started from (a hub model: its commit).
        assert row.locator("td.revision").inner_text() == "SmolLM2-135M-Instruct"
        screenshot(page, request, "-fleet")

        page.click(f"a[href='/deployments/{NAME}']")
        page.wait_for_selector("#plot-tokens canvas", timeout=60_000)  # uPlot drew the samples
        assert "healthy" in page.inner_text("#live")
        screenshot(page, request, "-deployment")

        page.click("#smoke")
        page.wait_for_selector("#run-status.status-succeeded", timeout=120_000)  # htmx refresh
        assert "smoke (check): done" in page.inner_text("#steps")
        screenshot(page, request, "-smoke-run")

        page.goto(f"{base}/deployments/{NAME}")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#rollback-1-button")
        page.wait_for_selector("#run-status.status-succeeded", timeout=300_000)
        screenshot(page, request, "-rollback-run")
        after = httpx.get(f"{base}/api/v1/deployments/{NAME}/revisions", headers=headers).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    newest, first = after["items"][0], after["items"][-1]
    assert newest["number"] == latest + 1
    assert newest["manifest_digest"] == first["manifest_digest"]
    assert newest["manifest_path"] == str(DEMO_MANIFEST.absolute())  # where it first came from
    assert status(home)["pid"] != before["pid"]  # the engine restarted with the first settings
    key = deployer("key", NAME, home=home).stdout.strip()
    assert "Paris" in ask(str(status(home)["endpoint"]), key)
    assert blocked_requests.urls == []  # the pages asked nothing of any other host


def test_the_dashboard_shows_intent_beside_fact_and_applies_a_previewed_change(
    first_apply: Result,
    home: Path,
    loopback_page: Page,
    blocked_requests: BlockedRequests,
    request: pytest.FixtureRequest,
) -> None:
    """In Chromium: the plan's KV pool beside the engine's own figure (equal, to the block), the
    model folder the engine reports, each smoke answer, the log tail and the whole log as a
    download; then a changed manifest (a smoke check's latency bound) previewed as a plan with
    its diff, and applied from the page without restarting the engine."""
    operator = token(home, "operator")
    before = status(home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, port)
    page = loopback_page
    try:
        page.goto(f"{base}/login")
        page.fill("input[name=token]", operator)
        page.click("button[type=submit]")
        page.goto(f"{base}/deployments/{NAME}")
        page.wait_for_selector("#kv-engine", timeout=60_000)  # htmx loaded the intent
        planned, engine = page.inner_text("#kv-planned"), page.inner_text("#kv-engine")
        intent = httpx.get(
            f"{base}/api/v1/deployments/{NAME}/intent",
            headers={"Authorization": f"Bearer {operator}"},
            timeout=60,
        ).json()
        [served] = intent["served"]
        assert served["kv_blocks"] == intent["capacity"]["kv_blocks"], intent
        assert served["kv_cache_size_tokens"] == intent["capacity"]["kv_cache_size_tokens"]
        assert f"{served['kv_blocks']:,} blocks of 128 tokens" in planned
        assert "as planned" in engine, engine
        assert "SmolLM2-135M-Instruct" in page.inner_text("#served")
        assert "--max-model-len" in page.inner_text("#argv")
        assert "Paris" in page.inner_text("#smoke-history")
        page.select_option("select[name=lines]", "10000")
        page.wait_for_function(
            "document.querySelector('#log-tail').textContent.includes('Starting vLLM server')",
            timeout=30_000,
        )
        screenshot(page, request, "-intent")
        with page.expect_download() as downloading:
            page.click("#log-download")
        whole = Path(downloading.value.path()).read_text()
        assert "Starting vLLM server on http://127.0.0.1:" in whole
        assert deployer("key", NAME, home=home).stdout.strip() not in whole

        page.click("#apply-changed")
        text = page.input_value("#manifest")
        assert "maxLatencyMs: 30000" in text
        page.fill("#manifest", text.replace("maxLatencyMs: 30000", "maxLatencyMs: 60000"))
        page.click("#preview-button")
        page.wait_for_selector("#plan-steps")
        assert "+      maxLatencyMs: 60000" in page.inner_text("#changes")
        screenshot(page, request, "-apply-preview")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#apply")
        page.wait_for_selector("#run-status.status-succeeded", timeout=300_000)
        steps = page.inner_text("#steps")
        assert "deploy (skip)" in steps, steps
        assert "smoke (check): done" in steps, steps
        screenshot(page, request, "-apply-run")
    finally:
        server.terminate()
        server.wait(timeout=30)
    after = status(home)
    assert after["pid"] == before["pid"], "a smoke check's bound alone does not restart it"
    assert after["status"] == "healthy"
    assert blocked_requests.urls == []


def test_a_killed_engine_is_restarted_by_its_supervisor(first_apply: Result, home: Path) -> None:
    pid = int(status(home)["pid"])  # type: ignore[arg-type]
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 180
    entry = status(home)
    while time.monotonic() < deadline:
        entry = status(home)
        if entry["healthy"] and entry["pid"] != pid:
            break
        time.sleep(2)
    assert entry["healthy"] is True, entry
    assert entry["pid"] != pid


def test_logs_show_the_engine_output(first_apply: Result, home: Path) -> None:
    result = deployer("logs", NAME, "-n", "400", home=home)
    assert result.code == 0
    assert "Starting vLLM server on http://127.0.0.1:" in result.stdout


def test_destroy_stops_everything_and_frees_the_port(first_apply: Result, home: Path) -> None:
    entry = status(home)
    port = int(str(entry["endpoint"]).rsplit(":", 1)[1].split("/")[0])
    pid = int(entry["pid"])  # type: ignore[arg-type]
    result = deployer("destroy", NAME, home=home)
    assert result.code == 0, result.output
    assert f"{NAME} destroyed" in result.stdout
    assert not psutil.pid_exists(pid)
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again
    assert status(home)["status"] == "destroyed"
    assert not (home / "deployments" / NAME / "api-key").exists()
    again = deployer("destroy", NAME, home=home)
    assert again.code == 0
    assert "was already stopped" in again.stdout

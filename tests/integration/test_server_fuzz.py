"""The server's OpenAPI document fuzzed by Schemathesis against the real server process on a
real SQLite state with deployments, runs and engine samples in it: no request, however odd,
gets a 500."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from deployer.server import auth
from deployer.settings import Settings
from deployer.state import DeploymentStatus, EngineSample, RunStatus, StateStore

SCHEMATHESIS = Path(sys.executable).with_name("st")


def test_no_request_gets_a_server_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as store:
        for name in ("alpha", "bravo"):
            store.upsert_deployment(name, target_kind="local", status=DeploymentStatus.FAILED)
            run = store.start_run(name, "apply")
            store.finish_run(run.id, RunStatus.FAILED, "engine did not start")
        store.add_samples([EngineSample("alpha", "http://127.0.0.1:9/v1", datetime.now(UTC), {})])
    token, _ = auth.create_token(settings, "fuzz", "admin")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DEPLOYER_HOME": str(settings.home)}
    log_path = tmp_path / "server.log"  # a file: an unread pipe would fill and stall it
    server = subprocess.Popen(
        [sys.executable, "-m", "deployer", "server", "--port", str(port), "--scrape-interval", "0"],
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        fuzz = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{base}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "40",
                "--seed",
                "14",
                "--no-color",
            ],
            env={**env, "SCHEMATHESIS_HOOKS": ""},
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = log_path.read_text()
    assert fuzz.returncode == 0, fuzz.stdout[-6000:] + fuzz.stderr[-2000:]
    assert " passed" in fuzz.stdout
    assert "Traceback" not in log, log[-4000:]
    assert '" 500' not in log

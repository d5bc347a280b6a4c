"""The server's HTTP API, through its real ASGI application on a real SQLite state (Starlette's
test client speaks HTTP to the app in-process; the integration test runs the real server)."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployer.server import auth
from deployer.settings import Settings
from deployer.state import DeploymentStatus, Role, RunStatus, StateStore
from tests.conftest import DEMO_MANIFEST


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as store:
        for name in ("alpha", "bravo", "charlie"):
            store.upsert_deployment(name, target_kind="local", status=DeploymentStatus.FAILED)
            run = store.start_run(name, "apply")
            store.finish_run(run.id, RunStatus.FAILED, "engine did not start")
    return settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_or_a_wrong_one_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    missing = client.get("/api/v1/deployments")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = tokens["admin"][:-2] + "xx"
    assert client.get("/api/v1/deployments", headers=bearer(wrong)).status_code == 401
    assert client.get("/api/v1/deployments", headers=bearer("not-a-token")).status_code == 401


def test_a_viewer_lists_a_page_at_a_time(client: TestClient, tokens: dict[str, str]) -> None:
    first = client.get("/api/v1/deployments?limit=2", headers=bearer(tokens["viewer"]))
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["total"], [d["name"] for d in body["items"]]) == (3, ["alpha", "bravo"])
    assert body["items"][0]["last_run"]["error"] == "engine did not start"
    rest = client.get("/api/v1/deployments?limit=2&offset=2", headers=bearer(tokens["viewer"]))
    assert [d["name"] for d in rest.json()["items"]] == ["charlie"]
    too_big = client.get("/api/v1/deployments?limit=100000", headers=bearer(tokens["viewer"]))
    assert too_big.status_code == 422


def test_the_api_answers_what_status_json_prints(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    from deployer import api

    [view] = api.status(settings, "alpha")
    answer = client.get("/api/v1/deployments/alpha", headers=bearer(tokens["viewer"])).json()
    runs = answer.pop("runs")
    assert answer == view.to_json()
    assert [(r["operation"], r["status"]) for r in runs] == [("apply", "failed")]
    missing = client.get("/api/v1/deployments/zulu", headers=bearer(tokens["viewer"]))
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_a_viewer_cannot_destroy_and_the_refusal_is_audited(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    refused = client.post("/api/v1/deployments/alpha/destroy", headers=bearer(tokens["viewer"]))
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]["message"]
    with StateStore(settings.database_url) as store:
        [event] = store.list_audit()
        assert store.get_deployment("alpha").status is DeploymentStatus.FAILED  # type: ignore[union-attr]
    assert (event.actor, event.action, event.result) == ("viewer", "denied", "refused")


def sse(text: str) -> list[tuple[str, dict[str, object]]]:
    """Server-Sent Events as (event, data) pairs."""
    frames = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        frames.append((fields["event"], json.loads(fields["data"])))
    return frames


def test_destroy_is_a_background_run_whose_events_stream(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    started = client.post("/api/v1/deployments/bravo/destroy", headers=bearer(tokens["operator"]))
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    with client.stream(
        "GET", f"/api/v1/runs/{run_id}/events", headers=bearer(tokens["viewer"])
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        frames = sse("".join(stream.iter_text()))
    assert frames[-1] == ("end", {"run_id": run_id, "status": "succeeded"})
    assert ("step_started", "destroy") in [(kind, data.get("step")) for kind, data in frames]
    run = client.get(f"/api/v1/runs/{run_id}", headers=bearer(tokens["viewer"])).json()
    assert [(s["name"], s["status"]) for s in run["steps"]] == [("destroy", "done")]
    deadline = time.monotonic() + 10  # the audit line is written as the run's thread ends
    with StateStore(settings.database_url) as store:
        while not store.list_audit() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get_deployment("bravo").status is DeploymentStatus.DESTROYED  # type: ignore[union-attr]
        [audit] = store.list_audit()
    assert (audit.actor, audit.action, audit.target, audit.result) == (
        "operator",
        "destroy",
        "bravo",
        "ok",
    )


def test_a_second_run_on_a_deployment_being_changed_is_409(
    client: TestClient, tokens: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    # Another deployer process (a CLI apply) is changing charlie: a run recorded by a live
    # process that is not the server.
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from deployer.state import StateStore\n"
            "store = StateStore(sys.argv[1]); store.start_run('charlie', 'apply')\n"
            "print('started', flush=True); time.sleep(60)",
            settings.database_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "started"
        busy = client.post("/api/v1/deployments/charlie/destroy", headers=bearer(tokens["admin"]))
        assert busy.status_code == 409, busy.text
        assert busy.json()["code"] == "run_in_progress"
    finally:
        holder.kill()
        holder.wait()
    with StateStore(settings.database_url) as store:
        assert store.get_deployment("charlie").status is DeploymentStatus.FAILED  # type: ignore[union-attr]


def test_a_revoked_token_is_refused_from_the_next_request(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    headers = bearer(tokens["viewer"])
    assert client.get("/api/v1/deployments", headers=headers).status_code == 200
    [viewer] = [t for t in auth.list_tokens(settings) if t.name == "viewer"]
    auth.revoke_token(settings, viewer.id)
    assert client.get("/api/v1/deployments", headers=headers).status_code == 401


def test_no_token_value_reaches_the_state_database(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    client.get("/api/v1/deployments", headers=bearer(tokens["admin"]))
    client.post("/api/v1/deployments/alpha/destroy", headers=bearer(tokens["viewer"]))
    path = settings.home / "state.db"
    raw = path.read_bytes() + b"".join(
        p.read_bytes() for p in path.parent.glob("state.db-*") if p.is_file()
    )
    for token in tokens.values():
        assert token.encode() not in raw
        assert token[len(auth.PREFIX) :].encode() not in raw
    with sqlite3.connect(path) as db:
        stored = {row[0] for row in db.execute("select token_sha256 from api_tokens")}
    assert stored == {auth.digest(t) for t in tokens.values()}


def test_a_posted_manifest_is_planned(client: TestClient, tokens: dict[str, str]) -> None:
    answer = client.post(
        "/api/v1/plan",
        content=DEMO_MANIFEST.read_text(),
        headers={**bearer(tokens["viewer"]), "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert (plan["deployment"], plan["target"]) == ("smollm2-demo", "local")
    assert plan["capacity"]["kv_blocks"] > 0


def test_a_bad_posted_manifest_gets_every_problem_with_its_line(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    text = DEMO_MANIFEST.read_text()
    text = text.replace("maxModelLen: 2048", "maxModelLen: lots").replace(
        "accelerator: cpu", "acelerator: cpu"
    )
    answer = client.post(
        "/api/v1/plan",
        content=text,
        headers={**bearer(tokens["viewer"]), "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 422, answer.text
    problems = answer.json()["detail"]["problems"]
    lines = text.splitlines()
    found = {lines[p["line"] - 1].strip().split(":")[0] for p in problems}
    assert found == {"maxModelLen", "acelerator"}, problems
    assert all(p["column"] and p["message"] for p in problems)
    assert any(p["hint"] and "accelerator" in p["hint"] for p in problems), problems
    fields = {p["field"] for p in problems}
    assert fields == {"spec.serving.maxModelLen", "spec.resources.acelerator"}, problems
    assert "/posted/" not in answer.text  # where the server keeps it does not leak
    assert auth.list_tokens(settings)  # nothing else changed: the tokens are still there


def test_metrics_count_deployments_by_status_and_runs(
    client: TestClient, tokens: dict[str, str]
) -> None:
    page = client.get("/metrics").text
    assert 'deployer_deployments{status="failed"} 3.0' in page
    assert 'deployer_runs_total{operation="apply",status="failed"} 3.0' in page
    assert 'deployer_run_duration_seconds_total{operation="apply",status="failed"}' in page


def test_the_committed_openapi_document_is_the_served_one(
    client: TestClient, tokens: dict[str, str]
) -> None:
    committed = json.loads((Path(__file__).parents[3] / "docs" / "openapi.json").read_text())
    served = client.get("/api/v1/openapi.json").json()
    assert served == committed, "regenerate: .venv/bin/python scripts/openapi.py"
    assert "/api/v1/deployments" in served["paths"]


def test_an_id_out_of_range_is_refused_not_a_server_error(
    client: TestClient, tokens: dict[str, str]
) -> None:
    # Found by the Schemathesis run: an id past 64 bits used to reach SQLite and fail there.
    for path in ("/api/v1/runs/58508353650195412549632", "/api/v1/runs/0/events"):
        assert client.get(path, headers=bearer(tokens["viewer"])).status_code == 422
    assert client.get("/api/v1/runs/12345", headers=bearer(tokens["viewer"])).status_code == 404


def test_a_first_admin_token_is_kept_owner_only_and_never_printed(tmp_path: Path) -> None:
    """`deployer server` on a state without tokens: an admin token in a 0600 file, its path on
    stderr (a server's output is often a log), none made when one exists."""

    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    made = auth.first_token(settings)
    assert made == settings.home / "server-admin.token"
    assert made.stat().st_mode & 0o777 == 0o600
    token = made.read_text().strip()
    with StateStore(settings.database_url) as store:
        principal = auth.authenticate(store, token)
    assert principal is not None
    assert (principal.name, principal.role) == ("first-admin", Role.ADMIN)
    assert auth.first_token(settings) is None  # one exists: no second
    [record] = auth.list_tokens(settings)
    auth.revoke_token(settings, record.id)
    again = auth.first_token(settings)  # every token revoked: a new way in
    assert again is not None
    assert again.read_text().strip() != token

    fresh = tmp_path / "fresh"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "deployer", "--home", str(fresh), "server", "--port", port],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        lines = [server.stderr.readline() for _ in range(2)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    kept = (fresh / "server-admin.token").read_text().strip()
    assert f"an admin token is in {fresh / 'server-admin.token'}" in lines[1], lines
    assert "/login" in lines[1]
    assert kept.startswith("dps_")
    assert kept not in "".join(lines)

"""Intent beside fact on a deployment's page and in the API: the smoke history with each answer
(escaped), the engine's log (a bounded tail, the whole log as a download), the latest revision's
plan beside what an engine reports, and applying a changed manifest after a plan preview.

The engine here is a loopback stand-in that serves the real vLLM 0.32 CPU build's captured
``/metrics`` page and a ``/v1/models`` answer in vLLM's layout; the real engine is compared with
the plan in ``tests/integration/test_local_apply.py``.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployer import api
from deployer.events import Event, EventKind
from deployer.hub.lock import lock_path, read_lock
from deployer.settings import Settings
from deployer.state import DeploymentRecord, DeploymentStatus, RunStatus, StateStore
from tests.conftest import DEMO_MANIFEST, MANIFESTS
from tests.unit.server.test_server_pages import HOSTILE, log_in

NAME = "smollm2-demo"
PAGE = (Path(__file__).parents[1] / "metrics" / "vllm-0.32.0-cpu.prom").read_text()
COMMIT = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
ROOT = (
    f"/root/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/{COMMIT}"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as store:
        store.upsert_deployment(NAME, target_kind="local", status=DeploymentStatus.HEALTHY)
        run = store.start_run(NAME, "apply")
        store.add_revision(
            NAME,
            run_id=run.id,
            manifest_path=str(DEMO_MANIFEST.absolute()),
            manifest_digest="sha256:" + "1" * 64,
            manifest_text=DEMO_MANIFEST.read_text(),
            lock_text=None,
        )
        for answer in ("Paris.", HOSTILE):
            message = f"pass: chat: capital -> {answer}"
            data = {"check": "chat: capital", "passed": True, "answer": answer, "latency_ms": 42.0}
            store.record_event(run.id, Event(EventKind.LOG, message, step="smoke", data=data))
        store.finish_run(run.id, RunStatus.SUCCEEDED)
    return settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_smoke_history_shows_each_answer_escaped(
    client: TestClient, tokens: dict[str, str]
) -> None:
    listed = client.get(f"/api/v1/deployments/{NAME}/smoke", headers=bearer(tokens["viewer"]))
    assert listed.status_code == 200
    assert [e["answer"] for e in listed.json()["items"]] == [HOSTILE, "Paris."]  # newest first
    assert listed.json()["items"][0]["latency_ms"] == 42.0
    log_in(client, tokens["viewer"])
    page = client.get(f"/deployments/{NAME}").text
    history = page.split('id="smoke-history"', 1)[1].split("</table>", 1)[0]
    assert "Paris." in history
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in history


def test_the_log_tail_is_bounded_and_the_whole_log_downloads(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    folder = settings.deployment_dir(NAME)
    folder.mkdir(parents=True)
    lines = [f"line {n}" for n in range(12_000)] + [f"engine said {HOSTILE}"]
    (folder / "engine.log").write_text("\n".join(lines) + "\n")
    headers = bearer(tokens["viewer"])

    tail = client.get(f"/api/v1/deployments/{NAME}/logs?lines=10000", headers=headers)
    assert tail.status_code == 200
    assert tail.text.splitlines() == lines[-10_000:]
    assert "attachment" not in tail.headers.get("content-disposition", "")
    too_many = client.get(f"/api/v1/deployments/{NAME}/logs?lines=10001", headers=headers)
    assert too_many.status_code == 422
    whole = client.get(f"/api/v1/deployments/{NAME}/logs", headers=headers)
    assert whole.text.splitlines() == lines
    assert whole.headers["content-disposition"] == f'attachment; filename="{NAME}-engine.log"'
    missing = client.get("/api/v1/deployments/nobody/logs", headers=headers)
    assert missing.status_code == 404, missing.text

    log_in(client, tokens["viewer"])
    shown = client.get(f"/deployments/{NAME}/logs?lines=200").text
    assert shown.splitlines()[0] == "line 11801"  # 200 lines: 11801..11999 and the last
    assert HOSTILE not in shown
    assert "engine said &lt;script&gt;" in shown
    assert client.get(f"/deployments/{NAME}/logs?lines=10001").status_code == 422


class _Engine(http.server.ThreadingHTTPServer):
    """Answers as the vLLM CPU build does: its captured metrics page and its /v1/models."""


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = PAGE.encode()
        elif self.path == "/v1/models":
            model = {"id": NAME, "object": "model", "root": ROOT, "max_model_len": 2048}
            body = json.dumps({"object": "list", "data": [model]}).encode()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[str]:
    served = _Engine(("127.0.0.1", 0), _EngineHandler)
    threading.Thread(target=served.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{served.server_address[1]}/v1"
    served.shutdown()
    served.server_close()


def running_view(endpoint: str) -> api.DeploymentView:
    now = datetime.now(UTC)
    record = DeploymentRecord(
        name=NAME,
        target_kind="local",
        status=DeploymentStatus.HEALTHY,
        manifest_path=None,
        manifest_digest=None,
        spec_digest="sha256:abc",
        endpoint=endpoint,
        served_model_name=NAME,
        message=None,
        created_at=now,
        updated_at=now,
        last_run_id=None,
    )
    return api.DeploymentView(
        record=record, running=True, healthy=True, pid=1, detail=None, args=("--port", "1")
    )


def test_the_plan_of_the_latest_revision_beside_what_the_engine_reports(
    settings: Settings, engine: str
) -> None:
    planned = api.planned(settings, NAME, api.revisions(settings, NAME)[0])
    assert planned.plan_problem is None
    assert planned.capacity is not None
    found = api.intent(settings, running_view(engine), planned)
    [served] = found.served
    assert served.problem is None
    assert (served.model, served.root, served.commit) == (NAME, ROOT, COMMIT)
    # The captured page is the demo's engine at 2048 tokens: the plan's pool, to the block.
    assert served.kv_blocks == planned.capacity.kv_blocks == 182
    assert served.kv_cache_size_tokens == planned.capacity.kv_cache_size_tokens == 23_296
    down = api.intent(settings, running_view("http://127.0.0.1:9/v1"), planned)
    assert "/models" in str(down.served[0].problem)
    assert "metrics" in str(down.served[0].problem)


def test_the_intent_page_shows_the_plan_when_nothing_runs(
    client: TestClient, tokens: dict[str, str]
) -> None:
    answer = client.get(f"/api/v1/deployments/{NAME}/intent", headers=bearer(tokens["viewer"]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["revision"], body["served"], body["locked"]) == (1, [], None)
    assert body["capacity"]["kv_blocks"] == 182
    log_in(client, tokens["viewer"])
    page = client.get(f"/deployments/{NAME}/intent").text
    assert "182 blocks of 128 tokens" in page
    assert "not running" in page


def test_a_changed_manifest_is_previewed_then_applied_as_a_run(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    csrf = log_in(client, tokens["operator"])
    form = client.get(f"/apply?deployment={NAME}").text
    assert "maxModelLen: 2048" in form  # the latest revision's manifest, to edit
    changed = DEMO_MANIFEST.read_text().replace("maxModelLen: 2048", "maxModelLen: 1024")
    fields = {"csrf": csrf, "deployment": NAME, "manifest": changed}
    preview = client.post("/apply/preview", data=fields)
    assert preview.status_code == 200, preview.text
    assert re.search(r"<span class=\"del\">-\s+maxModelLen: 2048</span>", preview.text)
    assert re.search(r"<span class=\"add\">\+\s+maxModelLen: 1024</span>", preview.text)
    assert 'id="plan-steps"' in preview.text
    assert 'id="apply"' in preview.text

    broken = client.post("/apply/preview", data={**fields, "manifest": "spec: [\n"})
    assert broken.status_code == 422
    assert re.search(r"line \d+, column \d+", broken.text), broken.text
    assert "posted.yaml" not in broken.text
    other = changed.replace(f"name: {NAME}", "name: another")
    refused = client.post("/apply/preview", data={**fields, "manifest": other})
    assert refused.status_code == 422
    assert f"this manifest is for another, not {NAME}" in refused.text

    viewer = TestClient(client.app, base_url="http://127.0.0.1")
    viewer_csrf = log_in(viewer, tokens["viewer"])
    seen = viewer.post("/apply/preview", data={**fields, "csrf": viewer_csrf})
    assert seen.status_code == 200
    assert 'id="apply"' not in seen.text  # a viewer may look, not apply
    denied = viewer.post("/apply", data={**fields, "csrf": viewer_csrf})
    assert denied.status_code == 403
    stale = client.post("/apply", data={**fields, "csrf": "0" * 64})
    assert stale.status_code == 403
    kept = set((settings.home / "posted").iterdir())
    foreign = client.post("/apply", data={**fields, "csrf": "0" * 64, "manifest": "spec: [\n"})
    assert foreign.status_code == 403  # refused before the text is read, let alone kept
    denied_broken = viewer.post("/apply", data={**fields, "csrf": viewer_csrf, "manifest": "x"})
    assert denied_broken.status_code == 403
    assert set((settings.home / "posted").iterdir()) == kept
    with StateStore(settings.database_url) as store:
        assert [r.operation for r in store.list_runs(NAME)] == ["apply"]  # nothing ran yet


def test_applying_from_the_page_runs_the_posted_manifest(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    """The posted text is what the run applies: here a model folder that does not exist, so the
    run fails at once (no engine is started in a unit test) and names that folder."""
    csrf = log_in(client, tokens["operator"])
    fields = {"csrf": csrf, "deployment": NAME, "manifest": "spec: [\n"}
    refused = client.post("/apply", data=fields)
    assert refused.status_code == 422  # nothing is started for a broken manifest
    missing = DEMO_MANIFEST.read_text().replace("SmolLM2-135M-Instruct", "no-such-model")
    started = client.post("/apply", data={**fields, "manifest": missing}, follow_redirects=False)
    assert started.status_code == 303, started.text
    run_id = int(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    with StateStore(settings.database_url) as store:
        while store.get_run(run_id).status is RunStatus.RUNNING:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        run = store.get_run(run_id)
    assert run is not None
    assert (run.operation, run.status) == ("apply", RunStatus.FAILED)
    assert "no-such-model" in str(run.error)


def test_a_locked_revision_shows_its_commit_and_every_files_hash(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    manifest = MANIFESTS / "demo" / "smollm2-135m-kubernetes.yaml"
    lock = read_lock(lock_path(manifest))
    assert lock is not None
    locked = lock.deployments["smollm2-k8s"]
    with StateStore(settings.database_url) as store:
        store.upsert_deployment(
            "smollm2-k8s", target_kind="kubernetes", status=DeploymentStatus.HEALTHY
        )
        store.add_revision(
            "smollm2-k8s",
            run_id=None,
            manifest_path=str(manifest.absolute()),
            manifest_digest="sha256:" + "2" * 64,
            manifest_text=manifest.read_text(),
            lock_text=lock_path(manifest).read_text(),
        )
    log_in(client, tokens["viewer"])
    page = client.get("/deployments/smollm2-k8s/intent").text
    assert f"at <code>{locked.commit}</code>" in page
    files = page.split('id="lock-files"', 1)[1].split("</table>", 1)[0]
    for f in locked.files:
        assert f"<code>{f.path}</code>" in files
        assert f"<code>{f.sha256}</code>" in files

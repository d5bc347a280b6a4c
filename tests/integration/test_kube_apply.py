"""apply on a kubernetes target against a loopback stand-in for the Kubernetes API.

No Kubernetes API server can run on these machines, so the API here is a FAKE
(tests/support/kubeapi.py: deployer's own client calls in the real wire format). It runs no
workload: the Deployment it reports is what the test puts there. What is real: deployer, the
pinned helm (rendering, and the upgrade it attempts), the state database. What this proves is the
plan executor's decision: an unchanged manifest is a skip that runs no helm at all; a changed
one runs helm upgrade (which then fails against the fake, as it must).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

from deployer.api import facts
from deployer.manifest.loader import load_manifest
from deployer.settings import Settings
from deployer.state import DeploymentStatus, StateStore
from deployer.state.records import EventRecord
from deployer.targets.kubernetes.target import DIGEST_ANNOTATION
from tests.integration.cli import Result, deployer
from tests.integration.kubetools import real_helm
from tests.support.kubeapi import KubeApi, kube_api

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "model_manifests" / "demo" / "smollm2-135m-kubernetes.yaml"
NAME = "smollm2-k8s"


def copy_demo(tmp_path: Path) -> Path:
    for source in (DEMO, DEMO.with_name("smollm2-135m-kubernetes.lock.yaml")):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path / DEMO.name


def run(api: KubeApi, tmp_path: Path, *args: str) -> Result:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    env = {
        "KUBECONFIG": str(kubeconfig),
        "DEPLOYER_CACHE": str(tmp_path / "cache"),
        "PATH": f"{real_helm().path.parent}{os.pathsep}{os.environ['PATH']}",
    }
    return deployer(*args, home=tmp_path / "home", env=env, timeout=300)


def applied_before(tmp_path: Path, manifest: Path) -> None:
    """The record an earlier, healthy apply of ``manifest`` left (written by the test: the
    first apply's helm upgrade needs a real cluster)."""
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    store = StateStore(settings.database_url)
    store.upsert_deployment(
        NAME,
        target_kind="kubernetes",
        target_spec={"kind": "kubernetes", "namespace": "demo", "replicas": 1},
        status=DeploymentStatus.HEALTHY,
        manifest_path=str(manifest),
        manifest_digest=facts.manifest_digest(load_manifest(manifest)),
        message="1/1 checks passed",
    )
    store.close()


def last_run_events(tmp_path: Path) -> list[EventRecord]:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    store = StateStore(settings.database_url)
    try:
        [run] = store.list_runs(NAME, limit=1)
        return store.list_events(run.id)
    finally:
        store.close()


def test_the_kubernetes_plan_is_render_secrets_helm_rollout_with_no_local_path(
    tmp_path: Path,
) -> None:
    with kube_api() as api:
        shown = run(api, tmp_path, "plan", str(copy_demo(tmp_path)))
        plan = json.loads(run(api, tmp_path, "plan", str(copy_demo(tmp_path)), "-o", "json").stdout)
    assert shown.code == 0, shown.output
    assert [s["name"] for s in plan["steps"]] == ["render", "secrets", "deploy", "ready", "smoke"]
    assert "helm upgrade --install --wait --atomic" in plan["steps"][2]["reason"]
    assert plan["endpoint"] == "http://smollm2-k8s.demo.svc:8000/v1"
    assert str(tmp_path) not in shown.stdout, "no path of this machine in a cluster's plan"
    assert "127.0.0.1" not in shown.stdout
    assert api.requests == [], "plan contacts no cluster"


def test_an_unchanged_kubernetes_apply_is_a_skip_and_runs_no_helm_upgrade(
    tmp_path: Path,
) -> None:
    manifest = copy_demo(tmp_path)
    with kube_api() as api:
        plan = json.loads(run(api, tmp_path, "plan", str(manifest), "-o", "json").stdout)
        digest = plan["engine"]["spec_digest"]
        # What the chart runs: the plan's arguments, in the same order (tests/golden/kube).
        api.deployment(
            "demo", NAME, annotations={DIGEST_ANNOTATION: digest}, args=plan["engine"]["args"]
        )
        applied_before(tmp_path, manifest)

        again = run(api, tmp_path, "apply", str(manifest))

        assert again.code == 0, again.output
        assert f"deploy: skip: already running at {digest[:12]}: unchanged" in again.stdout
        assert "smoke: skip: passed for this manifest already" in again.stdout
        assert not [r for r in api.requests if r[2].startswith("Helm")], "helm never called"
        secret = api.objects["/api/v1/namespaces/demo/secrets/smollm2-k8s-api-key"]
        key = run(api, tmp_path, "key", NAME).stdout.strip()
        assert base64.b64decode(secret["data"]["api-key"]).decode() == key
        assert key not in again.output

        manifest.write_text(manifest.read_text().replace("maxModelLen: 2048", "maxModelLen: 1024"))
        changed = run(api, tmp_path, "apply", str(manifest))

    assert changed.code == 1, changed.output
    started = [e.message for e in last_run_events(tmp_path) if e.kind == "step_started"]
    assert started[-1] == (
        "deploy: helm upgrade --install --wait --atomic: restart: --max-model-len 2048 -> 1024"
    )
    assert [r for r in api.requests if r[2].startswith("Helm")], "the changed apply ran helm"
    assert "error: helm could not roll out smollm2-k8s in demo" in changed.stderr
    assert "Traceback" not in changed.output

"""The JSON documents of the API's results (``-o json``): each result's ``to_json``, pinned to
the keys and values the CLI has always printed."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deployer import api
from deployer.api.daytwo import DeploymentView, DestroyResult, SmokeResult
from deployer.api.deploy import ApplyResult
from deployer.api.gitops import DeploymentDiff, FolderApply
from deployer.api.kubernetes import RenderReport
from deployer.api.manifests import LockReport, QuantizeOutcome, ValidationReport
from deployer.errors import ManifestError, NotFoundError, PlanError
from deployer.manifest.loader import LoadedManifest, load_manifest
from deployer.manifest.models import QuantizeSpec
from deployer.planner import Plan, ReplicaState
from deployer.quantize.artifact import ArtifactFile, QuantizeRecord
from deployer.quantize.pinned import ResolvedText
from deployer.quantize.recipe import build_recipe
from deployer.quantize.run import QuantizeJob
from deployer.settings import Settings
from deployer.smoke import CheckResult, SmokeReport
from deployer.state import DeploymentRecord, DeploymentStatus, RunRecord, RunStatus
from tests.conftest import DEMO_MANIFEST

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
REPORT = SmokeReport(
    [
        CheckResult("capital", True, 12.5, "Paris", [], 3),
        CheckResult("math", False, None, "5", ["expected 4"]),
    ]
)
SMOKE_JSON = {
    "passed": False,
    "summary": "1/2 smoke checks passed",
    "checks": [
        {
            "title": "capital",
            "passed": True,
            "answer": "Paris",
            "latency_ms": 12.5,
            "failures": [],
        },
        {
            "title": "math",
            "passed": False,
            "answer": "5",
            "latency_ms": None,
            "failures": ["expected 4"],
        },
    ],
}


@pytest.fixture
def plan(settings: Settings) -> Plan:
    return api.plan(DEMO_MANIFEST, settings)


def applied(plan: Plan, smoke: SmokeReport | None) -> ApplyResult:
    return ApplyResult(
        plan=plan,
        changed=True,
        smoke=smoke,
        smoke_skipped_reason=None if smoke else "passed for this manifest",
        endpoint="http://127.0.0.1:8000/v1",
        api_key_source="generated",
        api_key_path=Path("/home/u/.deployer/deployments/x/api-key"),
    )


def apply_json(plan: Plan, smoke: dict[str, Any] | None, skipped: str | None) -> dict[str, Any]:
    return {
        "deployment": plan.deployment,
        "changed": True,
        "endpoint": "http://127.0.0.1:8000/v1",
        "api_key_source": "generated",
        "smoke": smoke,
        "smoke_skipped_reason": skipped,
        "plan": plan.model_dump(mode="json"),
    }


def test_apply_result_json_has_the_plan_and_the_smoke_report(plan: Plan) -> None:
    assert applied(plan, REPORT).to_json() == apply_json(plan, SMOKE_JSON, None)
    assert applied(plan, None).to_json() == apply_json(plan, None, "passed for this manifest")


def test_apply_result_is_frozen(plan: Plan) -> None:
    result = applied(plan, None)

    with pytest.raises(ValueError, match="frozen"):
        result.changed = False  # type: ignore[misc]
    assert result.plan is plan
    assert result.deployment == plan.deployment


def record(**changes: Any) -> DeploymentRecord:
    fields: dict[str, Any] = {
        "name": "demo",
        "target_kind": "ssh",
        "status": DeploymentStatus.HEALTHY,
        "manifest_path": "/m.yaml",
        "manifest_digest": "d1",
        "spec_digest": "d2",
        "endpoint": "http://h:8000/v1",
        "served_model_name": "smol",
        "message": "2/2 smoke checks passed",
        "created_at": WHEN,
        "updated_at": WHEN,
        "last_run_id": 7,
    }
    return DeploymentRecord(**{**fields, **changes})


def test_deployment_view_json_is_the_record_with_live_facts() -> None:
    run = RunRecord(7, "demo", "apply", RunStatus.INTERRUPTED, WHEN, None, "killed", 42, "here")
    replica = ReplicaState("h1", "http://h1:8000/v1", True, False, pid=9, starts=2, detail="slow")
    view = DeploymentView(
        record=record(),
        running=True,
        healthy=False,
        pid=None,
        detail="ignored",
        replicas=(replica,),
        last_run=run,
        args=("--port", "8000"),
        running_spec_digest="d3",
        running_model="c0ffee" * 6 + "c0ff",
    )

    assert view.to_json() == {
        "name": "demo",
        "status": "healthy",
        "target": "ssh",
        "running": True,
        "healthy": False,
        "pid": None,
        "endpoint": "http://h:8000/v1",
        "model": "smol",
        "message": "2/2 smoke checks passed",
        "manifest_digest": "d1",  # what was applied ...
        "spec_digest": "d2",  # ... and what the engine was started with
        "updated_at": "2026-01-02T03:04:05.000678+00:00",
        "last_run": {"id": 7, "operation": "apply", "status": "interrupted", "error": "killed"},
        "replicas": [
            {
                "host": "h1",
                "endpoint": "http://h1:8000/v1",
                "running": True,
                "healthy": False,
                "pid": 9,
                "starts": 2,
                "detail": "slow",
            }
        ],
        "args": ["--port", "8000"],  # the engine's command line, as the target reports it
        "running_spec_digest": "d3",  # ... and the spec digest it reports for what runs
        "running_model": "c0ffee" * 6 + "c0ff",  # the commit (or folder) it was started from
        "measured_cost": None,  # none before a benchmark of the applied revision
    }
    assert view.record.name == "demo"


def test_deployment_view_json_without_runs_or_replicas() -> None:
    view = DeploymentView(
        record=record(endpoint=None, served_model_name=None, message=None),
        running=False,
        healthy=False,
        pid=None,
        detail=None,
    )

    dumped = view.to_json()

    assert (dumped["last_run"], dumped["replicas"]) == (None, [])
    assert (dumped["endpoint"], dumped["model"], dumped["message"]) == (None, None, None)


def test_smoke_and_destroy_json() -> None:
    assert SmokeResult(deployment="demo", report=REPORT).to_json() == {
        "deployment": "demo",
        **SMOKE_JSON,
    }
    assert DestroyResult(deployment="demo", existed=False).to_json() == {
        "deployment": "demo",
        "existed": False,
    }


def test_diff_json_names_the_change_or_the_error() -> None:
    changed = DeploymentDiff(
        name="a", target="local", path=Path("m/a.yaml"), changes=["deploy: update: argv"]
    )
    failed = DeploymentDiff(
        name="b",
        target="kubernetes",
        path=Path("m/b.yaml"),
        changes=[],
        error=NotFoundError("no cluster", hint="set a context"),
    )

    assert [changed.to_json(), failed.to_json()] == [
        {
            "deployment": "a",
            "target": "local",
            "path": "m/a.yaml",
            "changed": True,
            "changes": ["deploy: update: argv"],
            "error": None,
            "code": None,
        },
        {
            "deployment": "b",
            "target": "kubernetes",
            "path": "m/b.yaml",
            "changed": False,
            "changes": [],
            "error": "no cluster",
            "code": "not_found",
        },
    ]
    assert (changed.name, changed.changed, failed.error is not None) == ("a", True, True)


def test_folder_apply_json_lists_each_deployment(plan: Plan) -> None:
    [one, two, three] = [
        LoadedManifest(load_manifest(DEMO_MANIFEST).deployment, DEMO_MANIFEST, 1, i)
        for i in range(3)
    ]
    report = FolderApply(
        applied=[(one, applied(plan, REPORT))],
        failed=[(two, PlanError("too big", hint="a bigger GPU"))],
        not_run=[three],
        pruned=["old"],
    )

    assert report.to_json() == {
        "applied": [apply_json(plan, SMOKE_JSON, None)],
        "failed": [{"deployment": "smollm2-demo", "error": "too big", "code": "plan_refused"}],
        "not_run": ["smollm2-demo"],
        "pruned": ["old"],
        "dry_run": False,
        "ok": False,
    }
    assert FolderApply(dry_run=True).to_json() == {
        "applied": [],
        "failed": [],
        "not_run": [],
        "pruned": [],
        "dry_run": True,
        "ok": True,
    }


def test_quantize_json_is_the_record_with_created_and_the_gate() -> None:
    spec = QuantizeSpec(method="int8")
    recipe = build_recipe(spec, {"hidden_size": 576, "intermediate_size": 1536})
    text = ResolvedText(Path("t.txt"), "e" * 64, "built-in en-v1")
    job = QuantizeJob(
        "k" * 64, recipe, Path("/src"), "folder:abc", text, 64, 512, text, 0.05, Path("/artifact")
    )
    quantized = QuantizeRecord(
        key="k" * 64,
        method="int8",
        recipe=recipe.describe(),
        recipe_json=recipe.as_json(),
        source="/models/x",
        source_identity="folder:abc",
        calibration="built-in chat-v1",
        calibration_sha256="c" * 64,
        calibration_samples=64,
        sequence_length=512,
        evaluation="built-in en-v1",
        evaluation_sha256="e" * 64,
        evaluation_tokens=1200,
        source_perplexity=10.0,
        quantized_perplexity=float("inf"),
        source_bytes=269_000_000,
        artifact_bytes=135_000_000,
        quantize_seconds=60.0,
        total_seconds=90.0,
        versions={"llmcompressor": "0.14.0"},
        created_at="2026-01-01T00:00:00+00:00",
        files={"model.safetensors": ArtifactFile("a" * 64, 1000)},
    )
    outcome = QuantizeOutcome(job=job, record=quantized, created=True, gate="refused")

    assert outcome.to_json() == {"created": True, "gate": "refused", **asdict(quantized)}
    assert outcome.job is job


def test_lock_and_render_reports_as_json() -> None:
    lock = LockReport(path=Path("m.lock.yaml"), entries={"a": ("created", "c0ffee")})
    render = RenderReport(
        out_dir=Path("out"),
        pin="repo@c0ffee",
        objects=3,
        kube_versions=("1.37",),
        created=["a.yaml"],
        updated=[],
        unchanged=["b.yaml"],
    )

    assert lock.to_json() == {"path": "m.lock.yaml", "entries": {"a": ["created", "c0ffee"]}}
    assert render.to_json() == {
        "out_dir": "out",
        "pin": "repo@c0ffee",
        "objects": 3,
        "kube_versions": ["1.37"],
        "created": ["a.yaml"],
        "updated": [],
        "unchanged": ["b.yaml"],
        "changed": True,
    }


def test_validation_json_lists_the_manifests_or_the_problems() -> None:
    loaded = load_manifest(DEMO_MANIFEST)
    problem = ManifestError(
        "unknown key", location="m.yaml:3:5", hint="did you mean port?", field="spec.serving.prot"
    )
    other = ManifestError("invalid YAML", location="n.yaml:1:1")

    assert ValidationReport(manifests=[loaded]).to_json() == {
        "valid": True,
        "manifests": [{"name": "smollm2-demo", "path": str(DEMO_MANIFEST), "line": loaded.line}],
    }
    assert ValidationReport(problems=[*problem.problems, other]).to_json() == {
        "valid": False,
        "problems": [
            {
                "location": "m.yaml:3:5",
                "field": "spec.serving.prot",  # the field's dotted path, when it is a field's
                "message": "unknown key",
                "hint": "did you mean port?",
            },
            {"location": "n.yaml:1:1", "field": None, "message": "invalid YAML", "hint": None},
        ],
    }

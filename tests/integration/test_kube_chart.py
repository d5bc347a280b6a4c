"""The model-server chart, with the real helm 3.19 and the official Kubernetes schemas.

No cluster runs here: these tests lint and render the chart for every value set in
charts/model-server/ci/ and validate each object strictly (unknown fields are errors) for
Kubernetes 1.30, 1.34 and 1.37. What needs a cluster (scheduling, the init container's
download inside a pod, probes) is not run by them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.kube.crd_schemas import CUSTOM_SCHEMAS
from deployer.kube.validate import problems
from tests.integration.kubetools import (
    CHART,
    CI_VALUES,
    KUBE_VERSIONS,
    helm,
    notes,
    objects_of,
    template,
)


def test_there_are_value_sets_for_every_optional_object() -> None:
    kinds = set()
    for values in CI_VALUES:
        kinds |= {str(o["kind"]) for o in objects_of(template(values).stdout)}
    assert {
        "Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "ServiceAccount",
        "HorizontalPodAutoscaler", "ScaledObject", "ServiceMonitor", "PodDisruptionBudget",
        "NetworkPolicy", "Pod",
    } <= kinds  # fmt: skip


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict_passes(values: Path) -> None:
    result = helm("lint", "--strict", CHART, "--values", values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_is_valid_for_each_kubernetes_version(values: Path) -> None:
    result = template(values)
    assert result.returncode == 0, result.stderr
    objects = objects_of(result.stdout)
    assert len(objects) >= 4  # ServiceAccount, ConfigMap, Service, Deployment (+ PVC, ...)
    assert problems(objects, KUBE_VERSIONS) == []


def test_an_unknown_field_in_a_rendered_object_is_caught() -> None:
    deployment = next(o for o in objects_of(template().stdout) if o["kind"] == "Deployment")
    spec = deployment["spec"]
    assert isinstance(spec, dict)
    spec["replicaz"] = 2
    found = problems([deployment], ("1.30",))
    assert len(found) == 1
    assert "replicaz" in found[0].message


def test_a_custom_resource_with_an_unknown_field_is_caught() -> None:
    values = next(p for p in CI_VALUES if p.name == "keda-values.yaml")
    scaled = next(o for o in objects_of(template(values).stdout) if o["kind"] == "ScaledObject")
    assert problems([scaled], ("1.30",)) == []
    spec = scaled["spec"]
    assert isinstance(spec, dict)
    spec["maxReplicas"] = 3  # KEDA calls it maxReplicaCount
    assert "maxReplicas" in str(problems([scaled], ("1.30",))[0])


def test_a_kind_without_any_schema_is_a_problem_not_a_pass() -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in problems([unknown], ("1.30",))[0].message
    assert ("example.com/v1", "Widget") not in CUSTOM_SCHEMAS
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    assert problems([service], ("1.99",))[0].message == "kubernetes-validate has no schemas"


def test_defaults_render_the_engine_with_probes_gpu_and_the_fetch_init_container() -> None:
    objects = objects_of(template().stdout)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    engine = pod["containers"][0]
    assert engine["image"].startswith("vllm/vllm-openai:v")
    assert engine["image"] != "vllm/vllm-openai:latest"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert engine[probe]["httpGet"]["path"] == "/health"
    # 900 s of start-up budget at one probe every 10 s
    assert engine["startupProbe"]["failureThreshold"] == 90
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["initContainers"][0]["name"] == "fetch-model"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_notes_tell_how_to_reach_and_test_the_endpoint(tmp_path: Path) -> None:
    values = next(p for p in CI_VALUES if p.name == "full-values.yaml")
    text = notes(values, tmp_path)
    assert "kubectl --namespace llm port-forward service/demo-model-server 8000:8000" in text
    assert "rollout status deployment/demo-model-server --timeout=900s" in text
    assert '"model": "demo"' in text
    assert "/v1/chat/completions" in text
    assert "get secret demo-api-key" in text
    assert "not locked" in text


def test_notes_of_a_locked_model_name_its_commit(tmp_path: Path) -> None:
    values = next(p for p in CI_VALUES if p.name == "locked-gpu-values.yaml")
    text = notes(values, tmp_path)
    assert "2 file(s) at commit a09a35458c702b33eeacc393d103063234e8bc28" in text
    assert "WARNING" not in text


#: (values, what helm's message must name): a JSON pointer, or the offending key.
BAD_VALUES = [
    ("image:\n  tag: latest\n", "/image/tag"),
    ("model:\n  commit: abc123\n", "/model/commit"),
    ("model:\n  files:\n    - {path: a.bin, size: 1, sha256: nothex}\n", "/model/files/0/sha256"),
    ("engine:\n  args: [--api-key, sk-123]\n", "/engine/args"),
    ("engine:\n  env:\n    VLLM_API_KEY: sk-123\n", "'VLLM_API_KEY'"),
    ("apiKey:\n  value: sk-123\n", "'value'"),
    ("replicas: 2\n", "'replicas'"),
    ("accelerator:\n  count: -1\n", "/accelerator/count"),
    ("autoscaling:\n  kind: vpa\n", "/autoscaling/kind"),
]


@pytest.mark.parametrize(("text", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_the_values_schema_rejects_bad_values_naming_the_field(
    text: str, field: str, tmp_path: Path
) -> None:
    values = tmp_path / "bad.yaml"
    values.write_text(text)
    result = template(values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr, result.stderr
    assert "sk-123" not in result.stdout


def test_helm_test_pod_checks_health_and_the_served_model_with_the_key_by_reference() -> None:
    values = next(p for p in CI_VALUES if p.name == "full-values.yaml")
    pod = next(o for o in objects_of(template(values).stdout) if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"  # type: ignore[index]
    container = pod["spec"]["containers"][0]  # type: ignore[index]
    env = {e["name"]: e for e in container["env"]}
    assert env["BASE"]["value"] == "http://demo-model-server:8000"
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "demo-api-key",
        "key": "api-key",
    }
    assert "/v1/models" in container["command"][2]

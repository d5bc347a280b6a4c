"""``deployer render``: GitOps artifacts from a manifest and its lock, through the real command.

Everything here runs for real except a cluster, which these machines cannot have: the real
``deployer`` command, the pinned helm 3.19, kubernetes-validate's official schemas, a real lock
written by ``deployer lock`` from deployer's own hub mirror, and the chart's init-container
script downloading from that mirror with huggingface_hub. Golden files are in tests/golden/kube;
regenerate them with (then review the diff):

    DEPLOYER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_kube_render.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.hub.lock import read_lock
from deployer.hub.mirror import Mirror
from deployer.kube.validate import problems
from deployer.manifest.loader import load_manifest
from tests.integration import hubrepos
from tests.integration.cli import Result, deployer
from tests.integration.kubetools import CHART, KUBE_VERSIONS, helm, objects_of, real_helm

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "kube"
EXAMPLES = sorted(
    p
    for p in (ROOT / "model_manifests").rglob("*.yaml")
    if "kind: kubernetes" in p.read_text() and not p.name.endswith(".lock.yaml")
)
#: The example with a committed lock: its render carries the commit and every sha256.
LOCKED_DEMO = ROOT / "model_manifests" / "demo" / "smollm2-135m-kubernetes.yaml"
LLAMA = ROOT / "model_manifests" / "llama31-8b-instruct.yaml"
GIT_URL = "https://git.example.com/platform/gitops.git"
HUB_TOKEN = "hf_kubeRenderSecretToken0123456789"
API_KEY = "sk-kube-render-secret-key-0123456789"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An empty model store and state (the pinned helm reached through PATH); the secrets a
    careless renderer could leak."""
    return {
        "DEPLOYER_CACHE": str(tmp_path / "cache"),
        "PATH": f"{real_helm().path.parent}{os.pathsep}{os.environ['PATH']}",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": HUB_TOKEN,
        "ENGINE_API_KEY": API_KEY,
    }


def render(manifest: Path, out: Path, env: dict[str, str], *args: str) -> Result:
    home = out.parent / "home"
    return deployer("render", str(manifest), "-o", str(out), *args, home=home, env=env)


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert [x for x in result.stderr.splitlines() if x.startswith("error:")] != []
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "hint:" in result.stderr


# --- the examples: golden, valid, deterministic -------------------------------------------------


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: p.stem)
def test_examples_render_to_the_golden_files(
    manifest: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    name = load_manifest(manifest).deployment.name
    out = tmp_path / "out"
    git = ("--git-url", GIT_URL, "--git-path", f"clusters/prod/{manifest.stem}")
    result = render(manifest, out, env, *git)
    assert result.code == 0, result.output
    rendered = files_under(out)
    chart = {k: v for k, v in rendered.items() if k.startswith("chart/")}
    assert chart == {
        f"chart/model-server/{k}": v
        for k, v in files_under(CHART).items()
        if not k.startswith("ci/")
    }, "the chart copy is the chart, byte for byte (without its lint value sets)"
    ours = {k: v for k, v in rendered.items() if not k.startswith("chart/")}
    assert sorted(ours) == [
        f"argocd/{name}.yaml",
        f"flux/{name}.yaml",
        f"manifests/{name}.yaml",
        "values.yaml",
    ]
    golden = GOLDEN / manifest.stem
    if os.environ.get("DEPLOYER_UPDATE_GOLDEN"):
        for relative, data in ours.items():
            (golden / relative).parent.mkdir(parents=True, exist_ok=True)
            (golden / relative).write_bytes(data)
    assert files_under(golden) == ours, (
        f"render of {manifest.name} differs from {golden}; if the change is intended, "
        "regenerate with DEPLOYER_UPDATE_GOLDEN=1"
    )


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_examples_pass_helm_lint_and_strict_validation(
    manifest: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    result = render(manifest, out, env, "--git-url", GIT_URL, "--git-path", "gitops")
    assert result.code == 0, result.output
    assert f"valid for Kubernetes {', '.join(KUBE_VERSIONS[:2])}" in result.stdout
    lint = helm("lint", "--strict", out / "chart" / "model-server", "--values", out / "values.yaml")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = [
        obj
        for relative in ("manifests", "argocd", "flux")
        for path in sorted((out / relative).glob("*.yaml"))
        for obj in objects_of(path.read_text())
    ]
    kinds = sorted(str(o["kind"]) for o in objects)
    assert {"Deployment", "Service", "Application", "HelmRelease", "GitRepository"} <= set(kinds)
    assert problems(objects, KUBE_VERSIONS) == []


def test_the_locked_example_renders_its_commit_and_hashes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    lock = read_lock(LOCKED_DEMO.with_name("smollm2-135m-kubernetes.lock.yaml"))
    assert lock is not None
    entry = lock.deployments["smollm2-k8s"]
    out = tmp_path / "out"
    assert render(LOCKED_DEMO, out, env, "--git-url", GIT_URL, "--git-path", "demo").code == 0
    values = (out / "values.yaml").read_text()
    manifests = (out / "manifests" / "smollm2-k8s.yaml").read_text()
    assert f"commit: {entry.commit}" in values
    assert f'value: "{entry.commit}"' in manifests  # MODEL_REVISION of the init container
    for file in entry.files:
        assert f"sha256: {file.sha256}" in values
        assert file.sha256 in manifests  # files.json in the fetch ConfigMap


def test_render_twice_gives_identical_bytes_and_check_exit_codes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(LLAMA.read_text())
    first, second = tmp_path / "a", tmp_path / "b"
    assert render(manifest, first, env, "--format", "manifests").code == 0
    assert render(manifest, second, env, "--format", "manifests").code == 0
    assert files_under(first) == files_under(second)

    again = render(manifest, first, env, "--format", "manifests")
    assert "0 created, 0 updated, 1 unchanged" in again.stdout
    check = render(manifest, first, env, "--format", "manifests", "--check")
    assert check.code == 0, check.output

    manifest.write_text(manifest.read_text().replace("maxModelLen: 8192", "maxModelLen: 4096"))
    before = files_under(first)
    stale = render(manifest, first, env, "--format", "manifests", "--check")
    assert stale.code == 2, stale.output
    assert "would change" in stale.stdout
    assert files_under(first) == before, "--check writes nothing"


def test_no_secret_value_reaches_any_rendered_file(tmp_path: Path, env: dict[str, str]) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(
        LLAMA.read_text().replace(
            "    gpuMemoryUtilization: 0.9",
            "    gpuMemoryUtilization: 0.9\n    apiKey: {env: ENGINE_API_KEY}",
        )
    )
    out = tmp_path / "out"
    result = render(manifest, out, env, "--git-url", GIT_URL, "--git-path", "x")
    assert result.code == 0, result.output
    for relative, data in files_under(out).items():
        for secret in (HUB_TOKEN, API_KEY):
            assert secret.encode() not in data, f"{secret[:6]}... leaked into {relative}"
    assert HUB_TOKEN not in result.output
    assert API_KEY not in result.output
    values = (out / "values.yaml").read_text()
    assert "existingSecret: llama31-8b-instruct-api-key" in values
    assert "existingSecret: llama31-8b-instruct-hub-token" in values


def test_no_absolute_path_of_this_machine_in_the_output(
    tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    assert render(LLAMA, out, env, "--git-url", GIT_URL, "--git-path", "x").code == 0
    for relative, data in files_under(out).items():
        for local in (str(tmp_path), str(ROOT), str(Path.home())):
            assert local.encode() not in data, f"{local} in {relative}"


# --- a locked model: the lock's commit and hashes, and the init container's script --------------


@pytest.fixture(scope="module")
def mirror() -> Iterator[Mirror]:
    with Mirror([hubrepos.tiny()]) as served:
        yield served


def locked_manifest(tmp_path: Path, endpoint: str, env: dict[str, str]) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: deployer/v1alpha1
            kind: ModelDeployment
            metadata:
              name: tiny
            spec:
              model:
                source: huggingface
                repo: acme/tiny
                endpoint: {endpoint}
              resources: {{accelerator: L4, count: 1}}
              target: {{kind: kubernetes, namespace: models}}
            """
        )
    )
    result = deployer("lock", str(path), home=tmp_path / "home", env=env)
    assert result.code == 0, result.output
    return path


def test_a_locked_render_carries_the_commit_and_every_sha256(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    path = locked_manifest(tmp_path, mirror.base_url, env)
    lock = read_lock(tmp_path / "tiny.lock.yaml")
    assert lock is not None
    entry = lock.deployments["tiny"]
    out = tmp_path / "out"
    result = render(path, out, env, "--format", "manifests")
    assert result.code == 0, result.output
    assert f"locked: acme/tiny@{entry.commit}" in result.stdout
    text = (out / "manifests" / "tiny.yaml").read_text()
    assert f"# locked: acme/tiny@{entry.commit} ({len(entry.files)} files" in text
    deployment = next(o for o in objects_of(text) if o["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]  # type: ignore[index]
    assert {"name": "MODEL_REVISION", "value": entry.commit} in init["env"]
    config_map = next(o for o in objects_of(text) if o["kind"] == "ConfigMap")
    listed = json.loads(config_map["data"]["files.json"])  # type: ignore[index]
    assert listed == [
        {"path": f.path, "sha256": f.sha256, "size": f.size}
        for f in sorted(entry.files, key=lambda f: f.path)
    ]


def test_the_init_container_script_fetches_exactly_the_locked_files_and_verifies_them(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    """The chart's fetch_model.py, run with this Python and huggingface_hub (as the vLLM image
    would run it) against deployer's mirror: exactly the locked files, each sha256-checked; a
    second run downloads nothing; a file that does not match fails the container."""
    path = locked_manifest(tmp_path, mirror.base_url, env)
    out = tmp_path / "out"
    assert render(path, out, env, "--format", "manifests").code == 0
    text = (out / "manifests" / "tiny.yaml").read_text()
    config_map = next(o for o in objects_of(text) if o["kind"] == "ConfigMap")
    data = config_map["data"]
    assert isinstance(data, dict)
    (tmp_path / "fetch_model.py").write_text(data["fetch_model.py"])
    (tmp_path / "files.json").write_text(data["files.json"])
    lock = read_lock(tmp_path / "tiny.lock.yaml")
    assert lock is not None
    entry = lock.deployments["tiny"]
    model_dir = tmp_path / "models" / "acme--tiny" / entry.commit

    def fetch(files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(tmp_path / "fetch_model.py")],
            env={
                **os.environ,
                "MODEL_REPO": "acme/tiny",
                "MODEL_REVISION": entry.commit,
                "MODEL_DIR": str(model_dir),
                "MODEL_FILES": str(files),
                "HF_ENDPOINT": mirror.base_url,
                "HF_HOME": str(tmp_path / "hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = fetch(tmp_path / "files.json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{len(entry.files)} file(s) of acme/tiny@{entry.commit} verified" in first.stdout
    served = sorted(
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    )
    assert served == sorted(f.path for f in entry.files)

    mirror.clear_requests()
    second = fetch(tmp_path / "files.json")
    assert second.returncode == 0
    assert second.stdout.count("ok (cached)") == len(entry.files)
    assert [r for r in mirror.requests if "/resolve/" in r.path] == []

    tampered = json.loads((tmp_path / "files.json").read_text())
    tampered[0]["sha256"] = "0" * 64
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    bad = fetch(tmp_path / "bad.json")
    assert bad.returncode == 1
    assert f"error: {tampered[0]['path']} does not match the lock" in bad.stdout
    assert not (model_dir / tampered[0]["path"]).exists(), "a mismatching file is removed"


# --- refusals -----------------------------------------------------------------------------------


def test_a_manifest_for_another_target_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    result = render(ROOT / "model_manifests" / "mistral-7b-instruct.yaml", tmp_path / "o", env)
    assert_one_line_error(result, "spec.target.kind is ssh")


def test_gitops_formats_need_the_git_repository(tmp_path: Path, env: dict[str, str]) -> None:
    result = render(LLAMA, tmp_path / "o", env, "--format", "argocd")
    assert_one_line_error(result, "need the Git repository", "--git-url")
    outside = render(LLAMA, tmp_path / "o", env, "--git-url", GIT_URL)
    assert_one_line_error(outside, "is not inside a Git checkout", "--git-path")


def test_a_model_bigger_than_a_node_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    manifest = tmp_path / "big.yaml"
    manifest.write_text(
        LLAMA.read_text().replace("accelerator: L4\n    count: 1", "accelerator: L4\n    count: 16")
    )
    result = render(manifest, tmp_path / "o", env, "--format", "values")
    assert_one_line_error(result, "needs 16 x L4 in one pod, more than one node has (8)")

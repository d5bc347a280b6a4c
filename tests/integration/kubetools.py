"""The real tools of the Kubernetes tests: deployer's pinned helm and the chart.

There is no Kubernetes API server on the machines these tests run on (none can be installed),
so the tests run everything that needs none: helm lint and template, strict schema validation,
rendering. A missing helm fails the test with the set-up command; it is never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import NotFoundError
from deployer.kube.helm import Helm, find_helm
from deployer.kube.render import chart_dir, load_objects
from deployer.runner import Completed, run
from deployer.settings import Settings

CHART = chart_dir()
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
#: The oldest and newest Kubernetes minor versions deployer validates against, and the newest
#: kubernetes-validate knows.
KUBE_VERSIONS = ("1.30", "1.34", "1.37")


def real_helm() -> Helm:
    try:
        return find_helm(Settings.from_env())
    except NotFoundError as exc:
        pytest.fail(f"{exc.message}: run ./setup.sh (it installs the pinned helm)")


def helm(*args: str | Path) -> Completed:
    return run([real_helm().path, *args], check=False, timeout=120)


def template(
    values: Path | None = None, *, release: str = "demo", namespace: str = "llm"
) -> Completed:
    extra: list[str | Path] = ["--values", values] if values else []
    return helm("template", release, CHART, "--namespace", namespace, *extra)


def objects_of(text: str) -> list[dict[str, object]]:
    return load_objects(text)


def notes(values: Path, tmp_path: Path, *, release: str = "demo", namespace: str = "llm") -> str:
    """NOTES.txt as ``helm install`` would print it, rendered without a cluster.

    ``helm install --dry-run`` still asks a cluster for its version, so the notes are rendered
    through ``tpl`` from a copy of the chart, with the same values and release.
    """
    import json
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "NOTES.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'notes: {{ tpl (.Files.Get "files/NOTES.txt") . | toJson }}\n'
    )
    result = helm(
        "template", release, chart, "--namespace", namespace, "--values", values,
        "--show-only", "templates/zz-notes.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout.split("notes: ", 1)[1]))

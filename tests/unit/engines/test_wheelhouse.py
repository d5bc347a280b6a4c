"""Wheelhouses, for real: pip downloads a small package's wheels from the configured index."""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

import pytest

from deployer.engines.install import EnginePackage
from deployer.engines.wheelhouse import MARKER_NAME, prepare_wheelhouse, read_wheelhouse
from deployer.errors import UnsupportedError
from deployer.events import EventBus, EventKind
from deployer.settings import Settings

SIX = EnginePackage(engine="vllm", package="six", version="1.16.0", device="cpu")
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_a_wheelhouse_is_one_tar_of_wheels_with_their_sha256(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    made = prepare_wheelhouse(settings, SIX, PYTHON)
    assert made.root == tmp_path / "cache" / "wheelhouses" / f"six-1.16.0-py{PYTHON}"
    assert sorted(p.name for p in made.root.iterdir()) == [MARKER_NAME, "wheels.tar"]
    names = {name.split("-")[0] for name, _, _ in made.wheels}
    assert names == {"six", "pip"}  # pip itself, for hosts without ensurepip
    with tarfile.open(made.archive) as archive:
        for name, size, sha256 in made.wheels:
            data = archive.extractfile(name)
            assert data is not None
            content = data.read()
            assert len(content) == size
            assert hashlib.sha256(content).hexdigest() == sha256
    assert not list(made.root.parent.glob(".*.partial"))


def test_a_ready_wheelhouse_is_not_downloaded_again(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    first = prepare_wheelhouse(settings, SIX, PYTHON)
    logs: list[str] = []
    events = EventBus()
    events.subscribe(lambda e: logs.append(e.message) if e.kind is EventKind.LOG else None)
    again = prepare_wheelhouse(settings, SIX, PYTHON, events)
    assert again == first
    assert logs == [f"skip: wheelhouse {first.root.name} is ready (2 wheels)"]


def test_a_wheelhouse_without_its_marker_or_of_an_older_format_is_absent(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    root.mkdir()
    assert read_wheelhouse(root) is None  # an interrupted one: no marker
    marker = {"package": "six", "version": "1", "python_version": "3.11", "wheels": []}
    (root / MARKER_NAME).write_text(json.dumps(marker))
    assert read_wheelhouse(root) is None  # format 1: no pip wheel in it
    (root / MARKER_NAME).write_text(json.dumps({**marker, "format": 2}))
    found = read_wheelhouse(root)
    assert found is not None
    assert found.requirement == "six==1"


def test_an_engine_that_compiles_has_no_wheelhouse(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    package = EnginePackage(
        engine="llamacpp", package="llama-cpp-python", version="0.3.36", device="cpu"
    )
    with pytest.raises(UnsupportedError) as caught:
        prepare_wheelhouse(settings, package, PYTHON)
    assert caught.value.message.startswith("llama.cpp has no wheelhouse: llama-cpp-python is")
    assert caught.value.hint == "install it on the host itself: deployer engine install llamacpp"
    assert not (tmp_path / "cache").exists()  # nothing was downloaded

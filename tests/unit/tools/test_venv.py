"""Pinned tools in virtualenvs of their own: found by their marker, installed once."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from deployer.errors import EngineNotInstalledError
from deployer.events import Event, EventBus
from deployer.quantize.tool import QUANTIZER, find_quantizer, quantizer_root, tool_versions
from deployer.settings import Settings
from deployer.tools.guidellm import GUIDELLM, find_guidellm, install_guidellm
from deployer.tools.venv import MARKER_NAME, PinnedTool, ToolEnv, tool_root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, cache=tmp_path)


def _installed(settings: Settings, tool: PinnedTool, requirements: tuple[str, ...]) -> Path:
    """A folder shaped like the tool's finished venv (its python is this interpreter)."""
    root = tool_root(settings, tool)
    (root / "bin").mkdir(parents=True)
    os.symlink(sys.executable, root / "bin" / "python")
    marker = {"requirements": list(requirements), "python": "3.11.7", "installed_at": "now"}
    (root / MARKER_NAME).write_text(json.dumps(marker))
    return root


def test_each_tool_has_its_own_folder(settings: Settings) -> None:
    assert tool_root(settings, GUIDELLM) == settings.tools_dir / "guidellm-0.8.1"
    assert quantizer_root(settings) == settings.tools_dir / "llmcompressor-0.14.0"
    assert GUIDELLM.versions()["guidellm"] == "0.8.1"
    assert tool_versions()["llmcompressor"] == "0.14.0"


def test_missing_tool_names_its_install_command(settings: Settings) -> None:
    with pytest.raises(EngineNotInstalledError) as info:
        find_guidellm(settings)
    assert info.value.message == "GuideLLM 0.8.1 is not installed"
    assert (
        info.value.hint
        == "run: deployer tools install guidellm (./setup.sh does it; about a minute)"
    )
    with pytest.raises(EngineNotInstalledError) as info:
        find_quantizer(settings)
    assert info.value.message == "the quantizer (llmcompressor 0.14.0) is not installed"


def test_a_marker_of_other_pins_is_not_installed(settings: Settings) -> None:
    _installed(settings, GUIDELLM, ("guidellm==0.8.0",))
    with pytest.raises(EngineNotInstalledError):
        find_guidellm(settings)


def test_install_skips_at_once_when_complete(settings: Settings) -> None:
    root = _installed(settings, GUIDELLM, GUIDELLM.requirements)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    started = time.monotonic()
    env = install_guidellm(settings, bus)
    assert time.monotonic() - started < 0.5
    assert env == ToolEnv(root)
    assert env.bin("guidellm") == root / "bin" / "guidellm"
    assert [e.message for e in events] == [f"skip: GuideLLM already installed at {root}"]
    assert find_guidellm(settings) == env


def test_tools_do_not_share_a_marker(settings: Settings) -> None:
    _installed(settings, QUANTIZER, QUANTIZER.requirements)
    assert find_quantizer(settings).root == quantizer_root(settings)
    with pytest.raises(EngineNotInstalledError):
        find_guidellm(settings)

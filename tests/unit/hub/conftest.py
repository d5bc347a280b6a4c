"""Fixtures shared by the hub tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import constants


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated huggingface_hub client: a fresh HF_HOME, no token, no telemetry, no
    lookups on huggingface.co; returns the HF_HOME folder."""
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub reads these paths once, at import: point them into the test's home so a
    # developer's saved token is never sent, and so it does not ask huggingface.co for its list
    # of AI agents (an empty list, fresh, is what it would cache).
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    agents = home / ".agent_harnesses.json"
    agents.write_text(json.dumps({"standardEnvVars": [], "harnesses": {}}))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(agents))
    return home

"""The demo model on SSH hosts: its manifest with an ssh target, and the question it answers."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import DEMO_MANIFEST

NAME = "smollm2-demo"


def demo_on_ssh(folder: Path, target: str) -> Path:
    """``folder/demo-ssh.yaml``: the demo manifest with ``target`` (the lines under ``target:``,
    indented by four spaces, such as "kind: ssh\\ninventory: hosts.yaml\\ngroup: cpu")."""
    block = "".join(f"    {line}\n" for line in target.strip().splitlines())
    text = DEMO_MANIFEST.read_text().replace("  target:\n    kind: local\n", f"  target:\n{block}")
    assert "kind: ssh" in text
    path = folder / "demo-ssh.yaml"
    path.write_text(text)
    return path


def ask_capital(base_url: str, key: str, model: str = NAME) -> str:
    """``model``'s answer to "What is the capital of France?" (greedy) at ``base_url`` (…/v1)."""
    response = httpx.post(
        f"{base_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 32,
        },
        timeout=120,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])

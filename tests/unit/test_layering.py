"""The rules import-linter cannot state (its contracts are in pyproject.toml), read from the AST
of deployer/:

- the agent, copied to hosts that have a bare ``python3``, imports the standard library and
  ``deployer.agent`` only;
- processes start through ``subprocess`` (held to deployer.runner and the agent by import-linter),
  never through the ``os`` functions that start them another way, nor ``asyncio``'s.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "deployer"
AGENT = PACKAGE / "agent"

#: ``os`` functions that start or replace a process.
PROCESS_STARTERS = (
    {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
    | {f"exec{suffix}" for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
    | {f"spawn{suffix}" for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``path`` (a module of ``package``, by default
    the one its place under the repository says), relative ones resolved."""
    if package is None:
        package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            anchor = parts[: len(parts) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from X import y``: X, and X.y, which may be a module.
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", python_files(AGENT), ids=lambda p: p.name)
def test_the_agent_imports_the_standard_library_and_itself_only(path: Path) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in imports(path)
        if name != "deployer.agent"
        and not name.startswith("deployer.agent.")
        and name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] != "__future__"
    ]
    assert not bad, "the agent runs on hosts with nothing but python3:\n" + "\n".join(bad)


def test_the_import_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    # The check above is only as good as this walk.
    module = tmp_path / "m.py"
    module.write_text(
        "import json, os.path\n"
        "from deployer import errors\n"
        "from . import atomic\n"
        "from .. import runner\n"
        "from .runtime import VERSION\n"
        "def late():\n"
        "    import httpx\n"
    )

    found = {name for _, name in imports(module, "deployer.agent")}

    assert found == {
        "json",
        "os.path",
        "deployer",
        "deployer.errors",
        "deployer.agent",
        "deployer.agent.atomic",
        "deployer.runner",
        "deployer.agent.runtime",
        "deployer.agent.runtime.VERSION",
        "httpx",
    }


def test_no_module_starts_processes_but_through_subprocess() -> None:
    found = []
    for path in python_files(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (
                    (node.value.id == "os" and node.attr in PROCESS_STARTERS)
                    or (node.value.id == "asyncio" and node.attr.startswith("create_subprocess"))
                )
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module in ("os", "pty", "asyncio"):
                names = {alias.name for alias in node.names}
                starters = names & (PROCESS_STARTERS | {"spawn", "create_subprocess_exec"})
                if starters:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {sorted(starters)}")
    assert not found, "start processes with deployer.runner:\n" + "\n".join(found)

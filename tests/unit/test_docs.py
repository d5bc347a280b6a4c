"""docs/ARCHITECTURE.md stays true to the code: its feature matrix is what
scripts/feature_matrix.py computes from the registered drivers, and every module its module
table names exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
SCRIPT = ROOT / "scripts" / "feature_matrix.py"


def feature_matrix() -> ModuleType:
    spec = importlib.util.spec_from_file_location("feature_matrix", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def between(text: str, begin: str, end: str) -> str:
    assert text.count(begin) == 1, f"{begin} must appear once in {ARCHITECTURE.name}"
    assert text.count(end) == 1, f"{end} must appear once in {ARCHITECTURE.name}"
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def test_the_feature_matrix_is_what_the_script_prints() -> None:
    script = feature_matrix()
    documented = between(ARCHITECTURE.read_text(), script.BEGIN, script.END)
    assert documented == script.table(), (
        "docs/ARCHITECTURE.md's feature matrix is stale: paste the output of "
        "`.venv/bin/python scripts/feature_matrix.py` between its markers"
    )


def test_the_matrix_has_a_column_per_registered_kind() -> None:
    from deployer.targets import registry

    header = feature_matrix().table().splitlines()[0]
    assert header == "| feature | " + " | ".join(registry.BUILTIN) + " |"


def test_every_declared_row_covers_every_kind() -> None:
    from deployer.targets import registry

    script = feature_matrix()
    named = {name for name, how in script.ROWS if how is None}
    assert named == set(script.DECLARED), "each DECLARED row is placed in ROWS, and only those"
    for name, by_kind in script.DECLARED.items():
        assert set(by_kind) == set(registry.BUILTIN), name


def module_table() -> list[str]:
    """The first cell of each row of the "### Modules" table."""
    text = ARCHITECTURE.read_text()
    section = text.split("### Modules", 1)[1].split("\n## ", 1)[0]
    cells = [
        line.split("|")[1].strip()
        for line in section.splitlines()
        if line.startswith("| `") and line.count("|") >= 3
    ]
    assert len(cells) > 40, "the module table went missing"
    return cells


def test_every_module_the_table_names_exists() -> None:
    missing = []
    for cell in module_table():
        for name in re.findall(r"`([^`]+)`", cell):
            path = ROOT / name if name.startswith("tests/") else ROOT / "deployer" / name
            if not path.exists():
                missing.append(name)
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_the_table_covers_the_reshaped_core() -> None:
    named = {name for cell in module_table() for name in re.findall(r"`([^`]+)`", cell)}
    api = {f"api/{p.name}" for p in (ROOT / "deployer" / "api").glob("*.py")}
    agent = {f"agent/{p.name}" for p in (ROOT / "deployer" / "agent").glob("*.py")}
    wanted = (api | agent | {"targets/base.py", "targets/registry.py"}) - {"agent/__init__.py"}
    assert wanted <= named, f"not in the module table: {sorted(wanted - named)}"

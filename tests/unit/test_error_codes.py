"""Every DeployerError class has its own stable machine code (what ``-o json`` reports)."""

from __future__ import annotations

import importlib
import pkgutil

import deployer
from deployer.errors import DeployerError


def every_error_class() -> list[type[DeployerError]]:
    for module in pkgutil.walk_packages(deployer.__path__, "deployer."):
        if module.name.endswith("__main__") or ".cli" in module.name:
            continue
        importlib.import_module(module.name)
    found: list[type[DeployerError]] = []
    pending: list[type[DeployerError]] = [DeployerError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [c for c in found if c.__module__.startswith("deployer")]


def test_each_error_class_sets_its_own_unique_code() -> None:
    classes = every_error_class()
    assert len(classes) > 20
    missing = [c.__name__ for c in classes if "code" not in vars(c)]
    assert missing == [], f"set a code on {missing}"
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(code.isidentifier() and code.islower() for code in codes)

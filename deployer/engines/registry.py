"""Which engines deployer serves with: ``spec.serving.engine`` to its :class:`Engine`.

Each built-in engine lives in ``deployer/engines/<name>/`` and is imported only when asked for,
so ``deployer --version`` and a plan for vLLM never load llama.cpp's tables. Tests (and
plug-ins) add an engine with :func:`register`.
"""

from __future__ import annotations

from importlib import import_module

from deployer.engines.base import Engine
from deployer.errors import UnsupportedError

#: The built-in engines, each a package ``deployer.engines.<name>`` with an ``engine`` module.
BUILTIN: tuple[str, ...] = ("llamacpp", "vllm")

_REGISTERED: dict[str, Engine] = {}


def get(name: str) -> Engine:
    """The engine called ``name``; UnsupportedError (listing the known ones) otherwise."""
    engine = _REGISTERED.get(name)
    if engine is not None:
        return engine
    if name not in BUILTIN:
        raise UnsupportedError(
            f"unknown engine {name!r}", hint=f"supported engines: {', '.join(names())}"
        )
    found: Engine = import_module(f"deployer.engines.{name}.engine").ENGINE
    _REGISTERED[name] = found
    return found


def names() -> tuple[str, ...]:
    """Every engine's name, sorted."""
    return tuple(sorted(set(BUILTIN) | _REGISTERED.keys()))


def register(engine: Engine) -> None:
    """Add (or replace) an engine under ``engine.name``."""
    _REGISTERED[engine.name] = engine


def unregister(name: str) -> None:
    """Remove an engine added with :func:`register` (a built-in comes back on the next get)."""
    _REGISTERED.pop(name, None)

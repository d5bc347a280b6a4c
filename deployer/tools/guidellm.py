"""GuideLLM's own virtualenv: the load generator ``deployer bench`` runs.

GuideLLM 0.8 wants a newer ``transformers`` than vLLM's CPU build pins, so it gets
``<cache>/tools/guidellm-<version>``; torch is pinned to the CPU build the quantizer uses (pip
finds it through the machine's find-links; elsewhere PyPI's).
"""

from __future__ import annotations

from deployer.events import EventBus
from deployer.settings import Settings
from deployer.tools.venv import PinnedTool, ToolEnv, find_tool, install_tool

GUIDELLM_VERSION = "0.8.1"
REQUIREMENTS: tuple[str, ...] = (
    f"guidellm=={GUIDELLM_VERSION}",
    "torch==2.13.0",
    "transformers==5.17.0",
)
INSTALL_COMMAND = "deployer tools install guidellm"

GUIDELLM = PinnedTool(
    name="guidellm",
    version=GUIDELLM_VERSION,
    requirements=REQUIREMENTS,
    imports="guidellm",
    title=f"GuideLLM {GUIDELLM_VERSION}",
    short="GuideLLM",
    install_command=INSTALL_COMMAND,
    step="guidellm-install",
)


def find_guidellm(settings: Settings) -> ToolEnv:
    """The installed GuideLLM (EngineNotInstalledError with the install command otherwise)."""
    return find_tool(settings, GUIDELLM)


def install_guidellm(
    settings: Settings, events: EventBus | None = None, *, force: bool = False
) -> ToolEnv:
    """Install the pinned GuideLLM into its own virtualenv; idempotent and resumable."""
    return install_tool(settings, GUIDELLM, events, force=force)

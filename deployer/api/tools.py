"""What deployer installs and prepares, for ``deployer engine``, ``quantizer``, ``tools`` and
``demo``: engine virtualenvs and wheelhouses, the quantizer, GuideLLM, the pinned helm, the demo
model. Imported by those commands only, so the others start without it."""

from deployer.demo import prepare_demo_gguf, prepare_demo_model
from deployer.engines.install import (
    DEVICES,
    Device,
    EnginePackage,
    default_package,
    install_engine,
    list_engines,
)
from deployer.engines.wheelhouse import prepare_wheelhouse
from deployer.kube.helm import install_helm
from deployer.quantize.tool import install_quantizer
from deployer.tools.guidellm import install_guidellm

__all__ = [
    "DEVICES",
    "Device",
    "EnginePackage",
    "default_package",
    "install_engine",
    "install_guidellm",
    "install_helm",
    "install_quantizer",
    "list_engines",
    "prepare_demo_gguf",
    "prepare_demo_model",
    "prepare_wheelhouse",
]

"""The local target: the engine as a supervised process on this machine (the embedded default)."""

from deployer.targets.local.target import LocalTarget

__all__ = ["LocalTarget"]

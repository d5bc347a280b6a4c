"""Where models run. Each target implements :class:`deployer.targets.base.Target`."""

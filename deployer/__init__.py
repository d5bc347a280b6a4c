"""deployer: open models from a declarative manifest to a smoke-tested endpoint.

Importing the package has no side effects; heavy libraries are imported where they are used.
"""

__version__ = "0.1.0"

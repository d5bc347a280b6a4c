"""``deployer engine ...`` and ``deployer demo ...``: engine environments and the demo model."""

from __future__ import annotations

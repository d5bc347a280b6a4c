"""``deployer mirror serve``: a Hugging Face-compatible HTTP server over local model folders."""

from deployer.hub.mirror import Mirror, MirrorRepo, MirrorRequest

__all__ = ["Mirror", "MirrorRepo", "MirrorRequest"]

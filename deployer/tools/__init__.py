"""Pinned Python tools deployer runs in virtualenvs of their own (the quantizer, GuideLLM)."""

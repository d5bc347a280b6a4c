"""Commands over manifests and deployments (validate, schema, plan, apply, status, ...)."""

from __future__ import annotations

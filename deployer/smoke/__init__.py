"""Smoke checks: prove an OpenAI-compatible endpoint answers, and answers well."""

from deployer.smoke.checks import CheckResult, SmokeReport, run_checks

__all__ = ["CheckResult", "SmokeReport", "run_checks"]

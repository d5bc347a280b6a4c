"""Helpers shared by the test suites (real hosts, services)."""

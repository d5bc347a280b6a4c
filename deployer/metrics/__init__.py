"""Engines' load, read from their Prometheus metrics, whatever each engine names them."""

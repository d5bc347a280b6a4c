"""Serving engines: how to install each one and how to turn a plan into its command line."""

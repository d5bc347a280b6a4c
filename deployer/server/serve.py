"""Serving the application with uvicorn: loopback unless told otherwise, and TLS (or a stated
opt-out) whenever another address is bound."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import uvicorn

from deployer.errors import UnsupportedError
from deployer.server.app import create_app
from deployer.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, cert: Path | None, key: Path | None, *, insecure: bool) -> None:
    """Refuse a non-loopback address without TLS or the explicit opt-out; half a TLS pair."""
    if (cert is None) != (key is None):
        raise UnsupportedError(
            "TLS needs both a certificate and its key",
            hint="pass --tls-cert FILE and --tls-key FILE together",
        )
    if not is_loopback(host) and cert is None and not insecure:
        raise UnsupportedError(
            f"refusing to serve on {host} without TLS: tokens and session cookies would cross "
            "the network in the clear",
            hint="pass --tls-cert and --tls-key, or --insecure-no-tls behind a TLS-terminating "
            "proxy",
        )
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise UnsupportedError(f"{path}: no such file", hint="check --tls-cert / --tls-key")


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    insecure: bool = False,
    scrape_interval: float = 15.0,
    retention_days: float = 7.0,
) -> None:
    """Serve until interrupted, scraping every running engine each ``scrape_interval`` seconds
    (0: never) and keeping ``retention_days`` of samples."""
    check_binding(host, cert, key, insecure=insecure)
    app = create_app(
        settings, scrape_interval=scrape_interval, retention=timedelta(days=retention_days)
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        log_level="info",
        # Access lines name paths and statuses only; no header (a token) is ever logged.
        access_log=True,
        server_header=False,
    )
    uvicorn.Server(config).run()

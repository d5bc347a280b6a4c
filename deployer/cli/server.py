"""``deployer server``: the HTTP API on this machine's state; ``deployer server token``: who may
use it.

The server module (FastAPI, uvicorn) is imported only by these commands, so no other command
pays for it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployer.cli.context import STATE, boundary
from deployer.cli.main import app

#: The server's port unless told otherwise.
DEFAULT_PORT = 8600

server_app = typer.Typer(
    help="The HTTP API (and its tokens) on this machine's state store.",
    invoke_without_command=True,
)
token_app = typer.Typer(help="Tokens for the server: create, list, revoke.", no_args_is_help=True)
server_app.add_typer(token_app, name="token")
app.add_typer(server_app, name="server")


class RoleName(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


@server_app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to bind; anything but loopback needs TLS or --insecure-no-tls."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = DEFAULT_PORT,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (with --tls-key).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
    insecure_no_tls: Annotated[
        bool,
        typer.Option(
            "--insecure-no-tls",
            help="Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).",
        ),
    ] = False,
    scrape_interval: Annotated[
        float,
        typer.Option(
            "--scrape-interval", min=0, help="Seconds between scrapes of each engine (0: none)."
        ),
    ] = 15.0,
    retention_days: Annotated[
        float, typer.Option("--retention-days", min=0.01, help="Days of engine samples kept.")
    ] = 7.0,
) -> None:
    """Serve the HTTP API (/api/v1, its OpenAPI document at /api/v1/openapi.json, /metrics)."""
    if ctx.invoked_subcommand is not None:
        return
    with boundary():
        from deployer.server.auth import first_token
        from deployer.server.serve import check_binding, serve

        check_binding(host, tls_cert, tls_key, insecure=insecure_no_tls)
        scheme = "https" if tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        STATE.err.print(
            f"deployer server on {scheme}://{shown}:{port}/  (dashboard: /, API: /api/v1; "
            "Ctrl-C stops)",
            markup=False,
        )
        made = first_token(STATE.settings())
        if made is not None:
            STATE.err.print(
                f"no token existed: an admin token is in {made} (readable by you only); log in "
                f"with it at {scheme}://{shown}:{port}/login, then make tokens for others with: "
                "deployer server token create --role viewer --name NAME",
                markup=False,
            )
        else:
            STATE.err.print(
                "a token for it: deployer server token create --role viewer --name NAME",
                markup=False,
            )
        serve(
            STATE.settings(),
            host,
            port,
            cert=tls_cert,
            key=tls_key,
            insecure=insecure_no_tls,
            scrape_interval=scrape_interval,
            retention_days=retention_days,
        )


@token_app.command("create")
def token_create(
    role: Annotated[RoleName, typer.Option("--role", help="viewer, operator or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who holds it (shown in the audit).")],
) -> None:
    """Make a token and print it once: only its hash is kept."""
    with boundary():
        from deployer.server.auth import create_token

        token, record = create_token(STATE.settings(), name, role.value)
        STATE.err.print(
            f"token {record.id} ({escape(record.name)}, {record.role}): shown once, keep it",
        )
        STATE.console.print(token, markup=False, soft_wrap=True)


@token_app.command("list")
def token_list() -> None:
    """The tokens: id, name, role, first characters, when made, last used, revoked."""
    with boundary():
        from deployer.server.auth import list_tokens

        table = Table(box=None)
        for column in ("id", "name", "role", "starts", "created", "last used", "revoked"):
            table.add_column(column)
        for t in list_tokens(STATE.settings()):
            table.add_row(
                str(t.id),
                escape(t.name),
                t.role.value,
                t.prefix + "...",
                f"{t.created_at:%Y-%m-%d %H:%M:%S}",
                f"{t.last_used_at:%Y-%m-%d %H:%M:%S}" if t.last_used_at else "-",
                f"{t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "-",
            )
        STATE.console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token: the server refuses it from the next request on."""
    with boundary():
        from deployer.server.auth import revoke_token

        record = revoke_token(STATE.settings(), token_id)
        STATE.console.print(f"token {record.id} ({escape(record.name)}) revoked")

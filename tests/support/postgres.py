"""A throwaway PostgreSQL cluster on a loopback port, from Debian's ``postgresql`` package.

:func:`start_cluster` runs ``initdb`` into a fresh folder and ``pg_ctl start`` as the
``postgres`` user (PostgreSQL refuses to run as root); :meth:`Cluster.stop` stops it. Each test
gets a database of its own from :meth:`Cluster.new_database`.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

#: The unprivileged user the cluster runs as (the package creates it).
USER = "postgres"


@dataclass
class Cluster:
    folder: Path
    port: int
    bin: Path
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_database(self) -> str:
        """Create an empty database; its SQLAlchemy URL."""
        name = f"state{next(self._numbers)}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{name}"

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def stop(self) -> None:
        _as_postgres(
            [str(self.bin / "pg_ctl"), "stop", "-D", str(self.folder / "data"), "-m", "immediate"]
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster() -> Cluster:
    """initdb and start a cluster listening on 127.0.0.1 at a free port (trust authentication)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: run scripts/ssh-test-hosts-setup.sh "
            "(it apt-get installs postgresql)"
        )
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="deployer-pg-"))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, USER, USER)
    data = folder / "data"
    _as_postgres(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            USER,
            "-E",
            "UTF8",
            "--no-sync",
        ]
    )
    port = _free_port()
    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres(
        [
            str(bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-o",
            options,
        ]
    )
    return Cluster(folder=folder, port=port, bin=bin_dir)


def _as_postgres(argv: list[str]) -> None:
    command = argv if os.geteuid() != 0 else ["runuser", "-u", USER, "--", *argv]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

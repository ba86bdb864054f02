"""A real PostgreSQL server for the tests: Debian's binaries, a fresh cluster in a temp dir.

`initdb` and `pg_ctl` refuse to run as root, so as root the cluster belongs to Debian's
`postgres` user (the package creates it). The server listens on a free loopback port only,
trusts local connections (a throwaway cluster), and is stopped and removed at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port


def binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def postgres_server(password: str | None = None) -> Iterator[str]:
    """A running server; yields its URL (`postgresql://postgres@127.0.0.1:PORT/postgres`).

    With `password`, the server asks for it (scram-sha-256) instead of trusting loopback."""
    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="ocrflux-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    auth = ["--auth=trust"]
    if password is not None:
        secret = root / "password"
        secret.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(secret, "postgres")
        auth = ["--auth=scram-sha-256", f"--pwfile={secret}"]
    subprocess.run(
        _as_owner([initdb, "-D", str(data), "-U", "postgres", *auth, "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=100"
    subprocess.run(
        _as_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new empty database on the server at `url`; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name

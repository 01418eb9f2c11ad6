"""A throwaway PostgreSQL server for the tests: initdb and pg_ctl in a temporary folder,
listening on a Unix socket only (no TCP port), stopped and deleted at the end.

As root, initdb and the server run as the ``postgres`` user (initdb refuses root).
``$APPROVALFLOW_TEST_PG_URL`` (a ``postgresql://`` URL of an existing server on which
the tests may create schemas) is used instead when set. Each test gets a schema of its
own in that server: :meth:`Server.fresh_url`.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

ENV_URL = "APPROVALFLOW_TEST_PG_URL"
_counter = itertools.count(1)


def find_bin(name: str) -> str | None:
    """A PostgreSQL server program on PATH, or in Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    return None


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class Server:
    """A running server, and how to reach a fresh schema in it."""

    def __init__(self, base_url: str, folder: Path | None = None) -> None:
        self.base_url = base_url
        self.folder = folder

    @classmethod
    def start(cls, *, durable: bool = False) -> Server:
        """Start a throwaway cluster; raises RuntimeError saying why it can't.

        The tests' server skips the syncs to disk (nothing they check needs them); a
        ``durable`` one keeps fsync and full_page_writes on, as the benchmarks need."""
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("no PostgreSQL server programs (initdb, pg_ctl) on this machine; "
                               "install Debian's postgresql package")
        if os.geteuid() == 0 and not shutil.which("runuser"):
            raise RuntimeError("running as root, and runuser is missing to start PostgreSQL "
                               "as the postgres user")
        folder = Path(tempfile.mkdtemp(prefix="approvalflow-pg-"))
        folder.chmod(0o777)
        if os.geteuid() == 0:
            shutil.chown(folder, user="postgres")
        data = folder / "data"
        run = dict(check=True, capture_output=True, text=True, timeout=120)
        try:
            subprocess.run(_as_server_user([initdb, "-D", str(data), "-A", "trust", "-U",
                                            "postgres", "-E", "UTF8", "--locale=C"]), **run)
            options = f"-k {folder} -c listen_addresses='' -c max_connections=200"
            if not durable:
                options += " -c fsync=off -c full_page_writes=off"
            subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l",
                                            str(folder / "log"), "-w", "start"]), **run)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            shutil.rmtree(folder, ignore_errors=True)
            detail = getattr(e, "stderr", "") or str(e)
            raise RuntimeError(f"could not start a throwaway PostgreSQL: {detail.strip()}") from e
        query = urllib.parse.urlencode({"host": str(folder), "user": "postgres"})
        return cls(f"postgresql:///postgres?{query}", folder)

    def stop(self) -> None:
        if self.folder is None:
            return
        pg_ctl = find_bin("pg_ctl")
        if pg_ctl:
            subprocess.run(_as_server_user([pg_ctl, "-D", str(self.folder / "data"), "-m",
                                            "immediate", "stop"]), capture_output=True,
                           timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def fresh_url(self, name: str | None = None) -> str:
        """A URL whose ``search_path`` is a new, empty schema."""
        import psycopg

        schema = name or f"t{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options=" + urllib.parse.quote(f"-csearch_path={schema}")

    def drop(self, url: str) -> None:
        """Drop the schema of a URL made by :meth:`fresh_url`."""
        import psycopg

        options = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("options", [""])
        schema = options[0].removeprefix("-csearch_path=")
        if schema:
            with psycopg.connect(self.base_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

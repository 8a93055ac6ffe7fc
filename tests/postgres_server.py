"""A throwaway PostgreSQL cluster for the lake tests: Debian's `postgresql` binaries, run in a
temporary directory by an unprivileged user (PostgreSQL refuses to run as root, and CI runs
as root), listening on a Unix socket in that directory only, password authentication on.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from shared_work import locked

USER = "traces"
"""The cluster's superuser, the one the tests connect as."""
PORT = 5432
"""Part of the socket's name only: nothing listens on TCP."""


def find_bindir() -> Path | None:
    """Where `initdb` and `pg_ctl` are: on PATH, else Debian's versioned folder (which the
    `postgresql` package does not put on PATH), the newest version first."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _unprivileged() -> pwd.struct_passwd | None:
    """The user to run the cluster as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither user postgres nor nobody exists")


class PostgresCluster:
    """One cluster: `start()`, `create_database(name)`, `conninfo(name)`, `stop()`."""

    def __init__(self, bindir: Path) -> None:
        """Use the binaries in `bindir`; nothing runs until `start`."""
        self.bindir = bindir
        self.password = "pw-" + secrets.token_hex(12)
        self.owner = _unprivileged()
        # Not under pytest's tmp_path: its folders are private to root, and the cluster's
        # user must reach its own directory.
        self.root = Path(tempfile.mkdtemp(prefix="traces-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LC_ALL": "C",
            "PGPASSWORD": self.password,
            "HOME": str(self.root),
        }
        kwargs: dict[str, object] = {}
        if self.owner is not None:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        result: subprocess.CompletedProcess[str] = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.root,
            timeout=120,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()} {log}"
            )
        return result

    def start(self, template: Path | None = None) -> None:
        """Make the cluster's data directory and start the server (returns once it accepts
        connections). With `template` (a folder every xdist worker of the session reaches),
        the data directory is made by `initdb` once per session and copied by the other
        workers: initdb costs a few seconds of CPU, a copy of its 40 MB a tenth of one."""
        if template is None:
            self._initdb()
        else:
            with locked(template.with_name(template.name + ".lock")):
                if (template / "password").is_file():
                    self.password = (template / "password").read_text().strip()
                    self._copy(template / "data", self.data)
                else:
                    self._initdb()
                    shutil.rmtree(template, ignore_errors=True)  # a worker failed half-way
                    self._copy(self.data, template / "data")
                    (template / "password").write_text(self.password + "\n")
        options = f"-k {self.root} -c listen_addresses='' -p {PORT} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.owner is not None:
            for path in (self.root, pwfile):
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        pwfile.unlink()

    def _copy(self, source: Path, dest: Path) -> None:
        """Copy a data directory as it is: owner (the cluster's user, when we are root),
        modes (PostgreSQL refuses a data directory others can read) and links."""
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(source), str(dest)], check=True, timeout=120)

    def create_database(self, name: str) -> None:
        """A new empty database `name`."""
        self._run("createdb", "-h", str(self.root), "-p", str(PORT), "-U", USER, name)

    def conninfo(self, dbname: str, *, password: bool = False) -> str:
        """libpq's keyword/value string for database `dbname` (with the password in it when
        asked; otherwise the tests hand it over as `PGPASSWORD`)."""
        text = f"dbname={dbname} host={self.root} port={PORT} user={USER}"
        return f"{text} password={self.password}" if password else text

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

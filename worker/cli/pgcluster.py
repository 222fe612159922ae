"""A private, throwaway PostgreSQL cluster from the system's binaries, or from the binaries of the optional
`pgserver` package (`pip install 'worker[demo]'`) where none are installed (for the demo and for tests).

`initdb` into a temporary directory, start on a free loopback port with trust authentication, stop and delete
everything on exit. As root the server runs as the unprivileged `postgres` user (through `runuser`), because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cluster", "ClusterError", "find_bindir", "free_port", "packaged_bindir", "throwaway_cluster"]

_BINDIR_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin")


class ClusterError(RuntimeError):
    """The throwaway server could not be created or started; the message says why."""


def find_bindir() -> Path | None:
    """The newest directory holding initdb and pg_ctl (PATH first, then the usual install places, then the
    optional `pgserver` package's own build)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates: list[Path] = []
    for pattern in _BINDIR_GLOBS:
        root = Path("/")
        candidates.extend(root.glob(pattern.lstrip("/")))
    usable = [c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()]
    if not usable:
        return packaged_bindir()

    def version(path: Path) -> tuple[int, ...]:
        digits = "".join(ch if ch.isdigit() else " " for ch in str(path)).split()
        return tuple(int(d) for d in digits)

    return max(usable, key=version)


def packaged_bindir() -> Path | None:
    """The PostgreSQL binaries shipped inside the `pgserver` wheel (the `demo` extra), found without importing
    it; None when it is not installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists() else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    run_as: str | None
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterError(f"{Path(args[0]).name} failed: {detail[-1] if detail else proc.returncode}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
        )
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "max_connections": "100",
            **{k: _quote(v) for k, v in self.settings.items()},
        }
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# throwaway cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())

    def start(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60",
                "-D", str(self.datadir), "-l", str(self.logfile),
                timeout=90,
            )
        except ClusterError as exc:
            raise ClusterError(f"{exc}; server log: {self.log_tail()}") from None

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
                self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.datadir))

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _server_user() -> str | None:
    """None when we are not root; otherwise the unprivileged account that will own the server."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ClusterError("running as root and no unprivileged `postgres` user exists to run the server")


@contextlib.contextmanager
def throwaway_cluster(
    settings: Mapping[str, str] | None = None, *, port: int | None = None, keep: bool = False,
    bindir: Path | None = None,
) -> Iterator[Cluster]:
    """A started cluster; stopped and deleted on exit (unless `keep`). `bindir`: these binaries, not the
    ones find_bindir() chooses."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise ClusterError(
            "no PostgreSQL server binaries found (install them: apt-get install postgresql, "
            "or pip install 'worker[demo]' for a packaged build)"
        )
    run_as = _server_user()
    root = Path(tempfile.mkdtemp(prefix="worker-pg-"))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        if bindir == packaged_bindir():
            # The packaged build lives inside a virtualenv the server's unprivileged user may not be allowed
            # to enter (/root is private): give the server its own copy, removed with the cluster.
            # Same layout as in site-packages: the binaries find their libraries at $ORIGIN/../../../pgserver.libs.
            package = bindir.parent.parent
            shutil.copytree(package / "pginstall", root / "pkg" / "pgserver" / "pginstall", symlinks=True)
            libs = package.parent / "pgserver.libs"
            if libs.is_dir():
                shutil.copytree(libs, root / "pkg" / "pgserver.libs", symlinks=True)
            bindir = root / "pkg" / "pgserver" / "pginstall" / "bin"
    cluster = Cluster(bindir=bindir, root=root, port=port or free_port(), run_as=run_as,
                      settings=dict(settings or {}))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if not keep:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)

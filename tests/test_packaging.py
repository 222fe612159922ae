"""What the container image relies on, without a Docker engine: the wheel, installed (not editable) into a fresh
virtual environment from the locked requirements exactly as the Dockerfile does, runs `worker --help`,
`worker migrate`, the image's HEALTHCHECK command, and a `worker run` that processes a job and exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

import asyncpg
import pytest

from worker.cli.pgcluster import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _run(cmd: list[str], *, timeout: float = 240, **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{shlex.join(cmd)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the built wheel and the locked dependencies (nothing from this checkout on the path)."""
    work = tmp_path_factory.mktemp("packaging")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(ROOT)])
    (wheel,) = (work / "dist").glob("worker-*.whl")
    env_dir = work / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)])
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    _run([*pip, "-r", str(ROOT / "requirements.lock")])
    _run([*pip, str(wheel)])
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "check"])
    yield env_dir


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"} and v}
    return {**keep, "WORKER_LOG_FORMAT": "json", **extra}


def test_the_installed_wheel_is_not_the_checkout_and_ships_its_sql(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [str(venv / "bin" / "python"), "-c",
         "import worker, worker.sql as s; print(worker.__file__); print(s.sql_root())"],
        cwd=tmp_path, env=_env(),
    ).stdout.split()
    assert all(str(venv) in line for line in out), out
    assert out[1].endswith("worker/_sql")


def test_the_wheel_ships_the_license_that_pyproject_names(venv: Path) -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith(f"{project['license']['text']} License\n")
    (shipped,) = venv.glob("lib/python*/site-packages/worker-*.dist-info/licenses/LICENSE")
    assert shipped.read_text() == licence


def test_worker_version_prints_the_installed_package_version_and_exits_0(venv: Path, tmp_path: Path) -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = _run([str(venv / "bin" / "worker"), "--version"], cwd=tmp_path, env=_env()).stdout
    assert out == f"worker {version}\n"


def test_worker_help_lists_the_commands(venv: Path, tmp_path: Path) -> None:
    out = _run([str(venv / "bin" / "worker"), "--help"], cwd=tmp_path, env=_env()).stdout
    for command in ("run", "migrate"):
        assert re.search(rf"\b{command}\b", out), out


def test_worker_migrate_then_run_processes_a_job_and_exits_0_on_sigterm(
    venv: Path, tmp_path: Path, empty_database_url: str
) -> None:
    port = free_port()
    env = _env(
        DATABASE_URL=empty_database_url, WORKER_HTTP_ENABLED="true", WORKER_HTTP_HOST="127.0.0.1",
        WORKER_HTTP_PORT=str(port), WORKER_SCHEDULES_ENABLED="false", WORKER_SHUTDOWN_GRACE_S="5",
        WORKER_WORKER_ID="wheel-test",
    )
    worker = str(venv / "bin" / "worker")
    _run([worker, "migrate"], cwd=tmp_path, env=env)
    _run([worker, "migrate"], cwd=tmp_path, env=env)  # a second time: nothing to do, still exit 0

    job_id = uuid.uuid4()

    async def insert() -> None:
        conn = await asyncpg.connect(empty_database_url)
        try:
            await conn.execute("INSERT INTO job_queue (id, task_type) VALUES ($1, 'noop')", job_id)
        finally:
            await conn.close()

    async def status() -> str | None:
        conn = await asyncpg.connect(empty_database_url)
        try:
            value: str | None = await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job_id)
            return value
        finally:
            await conn.close()

    asyncio.run(insert())
    with (tmp_path / "worker.log").open("w+") as log:
        _run_until_sigterm([worker, "run"], tmp_path, env, log, status, venv)


def _run_until_sigterm(
    cmd: list[str], cwd: Path, env: dict[str, str], log: IO[str], status: Callable[[], Awaitable[str | None]],
    venv: Path,
) -> None:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(status()) != "succeeded":
            assert proc.poll() is None, f"worker exited early: {_tail(log)}"
            assert time.monotonic() < deadline, f"job not done: {_tail(log)}"
            time.sleep(0.1)
        # The image's HEALTHCHECK, word for word, against this process.
        healthcheck = _dockerfile_healthcheck()
        deadline = time.monotonic() + 30
        while subprocess.run([str(venv / "bin" / healthcheck[0]), *healthcheck[1:]], env=env,
                             capture_output=True, timeout=10, check=False).returncode != 0:
            assert time.monotonic() < deadline, f"healthcheck never passed: {_tail(log)}"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, _tail(log)
    events = [json.loads(line).get("event") for line in _lines(log) if line.startswith("{")]
    assert "daemon.stopped" in events


def _dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert match, "no exec-form HEALTHCHECK in the Dockerfile"
    command: list[str] = json.loads(match.group(1))
    return command


def _lines(log: IO[str]) -> list[str]:
    log.flush()
    log.seek(0)
    return log.read().splitlines()


def _tail(log: IO[str]) -> str:
    return "\n".join(_lines(log)[-30:])


def test_the_installed_wheel_ships_the_vendored_chart_library_with_its_licence(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [str(venv / "bin" / "python"), "-c",
         "import worker.http.admin as h, pathlib; print(pathlib.Path(h.__file__).parent / 'static')"],
        cwd=tmp_path, env=_env(),
    ).stdout.strip()
    static = Path(out)
    for name in ("operator.js", "vendor/uplot-1.6.32.min.js", "vendor/uplot-1.6.32.min.css", "vendor/uplot-LICENSE"):
        assert (static / name).is_file(), name
    assert "MIT License" in (static / "vendor" / "uplot-LICENSE").read_text()

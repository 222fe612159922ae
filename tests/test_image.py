"""The container image, built from the Dockerfile with podman and run against the local PostgreSQL.

No registry of base images is reachable, so the Dockerfile's PYTHON_IMAGE is a stand-in: Debian bookworm with
python3 and python3-venv, made by mmdebstrap (or debootstrap) from the host's Debian mirror and cached as a
tarball. Marker `image`: skipped when podman is missing, except under CI=true, where it fails instead (CI installs
podman, runc and mmdebstrap from .ci/apt-packages.txt). Prints the image's size and its start-up time to ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.unit.test_lock import RUNTIME_LOCK, _pins
from worker.cli.pgcluster import free_port

ROOT = Path(__file__).resolve().parent.parent
TAG = "localhost/worker:image-test"
BASE_TAG = "localhost/worker-standin-base:bookworm-1"
CACHE = Path(os.environ.get("WORKER_IMAGE_CACHE", "/var/cache/worker-image"))
SECRET = "image-test-runner-secret"
GRACE_S = 10

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(900)]

# Root podman without systemd: runc, cgroupfs, and explicit rlimits (the defaults fail under hybrid cgroups).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def _require_podman() -> None:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (scripts/setup.sh installs them as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def _debian_mirror() -> str:
    """The first Debian mirror of the host's apt sources (deb822 or one-line format)."""
    apt = Path("/etc/apt")
    files = [*sorted(apt.glob("sources.list.d/*.sources")), apt / "sources.list",
             *sorted(apt.glob("sources.list.d/*.list"))]
    for path in files:
        text = path.read_text() if path.is_file() else ""
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            if "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def _standin_tarball() -> Path:
    """Debian bookworm + python3 + python3-venv as a rootfs tarball, made once per machine."""
    cache = CACHE if os.access(CACHE.parent, os.W_OK) or CACHE.is_dir() else Path(tempfile.gettempdir()) / "wi"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / "standin-bookworm-python3-1.tar"
    if tarball.is_file():
        return tarball
    partial = cache / f"{tarball.name}.{os.getpid()}.partial.tar"
    packages = "python3,python3-venv,ca-certificates,passwd"
    try:
        _bootstrap(partial, packages)
        partial.rename(tarball)
    finally:
        partial.unlink(missing_ok=True)
    return tarball


def _bootstrap(partial: Path, packages: str) -> None:
    if shutil.which("mmdebstrap"):
        cmd = ["mmdebstrap", "--variant=minbase", f"--include={packages}", "--quiet",
               "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*", "bookworm", str(partial), _debian_mirror()]
        subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    elif shutil.which("debootstrap"):
        with tempfile.TemporaryDirectory(dir=partial.parent) as root:
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", root,
                            _debian_mirror()], check=True, timeout=600, capture_output=True)
            subprocess.run(["tar", "-C", root, "-cf", str(partial), "."], check=True, timeout=300)
    else:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but neither mmdebstrap nor debootstrap is installed")
        pytest.skip("no stand-in base: install mmdebstrap or debootstrap")


def _report(config: pytest.Config, line: str) -> None:
    """Figures go to the terminal even when output is captured (CI's log shows them)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(line, flush=True)


@pytest.fixture(scope="module")
def image(pytestconfig: pytest.Config) -> Iterator[str]:
    """The project's Dockerfile built on the stand-in base (layers cached by podman between runs)."""
    _require_podman()
    if _podman("image", "exists", BASE_TAG, check=False).returncode != 0:
        _podman("import", "--change", "CMD [\"python3\"]", str(_standin_tarball()), BASE_TAG)
    build = ["build", "--network=host", "--format", "docker", *LIMITS, "--build-arg", f"PYTHON_IMAGE={BASE_TAG}",
             "-t", TAG]
    # The host's trust store during the build only (a TLS-inspecting proxy's CA reaches pip); not in the image.
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_ca.is_file():
        build += ["-v", f"{host_ca}:{host_ca}:ro"]
    started = time.monotonic()
    _podman(*build, str(ROOT), timeout=900)
    size = int(_podman("image", "inspect", TAG, "--format", "{{.Size}}").stdout)
    _report(pytestconfig, f"\nimage {TAG}: {size / 1e6:.0f} MB (stand-in base included), "
                          f"built in {time.monotonic() - started:.0f} s")
    yield TAG


def _inside(image: str, *command: str) -> str:
    """Run a command in a throwaway container of the image, read-only, as the image's own user."""
    proc = _podman("run", "--rm", "--read-only", *LIMITS, "--network=none", "--entrypoint", command[0], image,
                   *command[1:], timeout=120)
    return proc.stdout


def test_the_image_runs_as_non_root_with_the_locked_versions_the_license_and_worker_version(image: str) -> None:
    config = json.loads(_podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["worker"] and config["Cmd"] == ["run"]
    assert _inside(image, "id", "-u").strip() == "10001"
    listed = _inside(image, "python", "-c", "import importlib.metadata as m, json; "
                     "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    installed = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in json.loads(listed).items()}
    version = installed.pop("worker")
    for installer in ("pip", "setuptools"):  # what `python3 -m venv` puts there, not the worker's
        installed.pop(installer, None)
    normalized = installed
    assert normalized == _pins(RUNTIME_LOCK), "the image must install exactly requirements.lock"
    assert _inside(image, "worker", "--version") == f"worker {version}\n"
    licence = (ROOT / "LICENSE").read_text()
    assert _inside(image, "cat", "/usr/share/licenses/worker/LICENSE") == licence
    shipped = _inside(image, "sh", "-c", "cat /opt/venv/lib/python3*/site-packages/worker-*.dist-info/licenses/LICENSE")
    assert shipped == licence


async def _job_status(url: str, job_id: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        status: str | None = await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", uuid.UUID(job_id))
        return status
    finally:
        await conn.close()


def _http(method: str, url: str, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"{}")


async def test_the_image_migrates_then_runs_reports_healthy_runs_a_triggered_job_and_exits_0_on_sigterm(
    image: str, empty_database_url: str, pytestconfig: pytest.Config
) -> None:
    env = ["-e", f"DATABASE_URL={empty_database_url}"]
    migrated = _podman("run", "--rm", "--read-only", *LIMITS, "--network=host", *env, image, "migrate").stdout
    assert migrated.startswith("applied migrations: 001"), migrated

    port = free_port()
    name = f"worker-image-test-{uuid.uuid4().hex[:8]}"
    for setting in (f"WORKER_HTTP_PORT={port}", "WORKER_HTTP_HOST=127.0.0.1", f"JOB_QUEUE_RUNNER_SECRET={SECRET}",
                    "WORKER_SCHEDULES_ENABLED=false", f"WORKER_SHUTDOWN_GRACE_S={GRACE_S}", f"WORKER_WORKER_ID={name}"):
        env += ["-e", setting]
    started = time.monotonic()
    _podman("run", "-d", "--name", name, "--read-only", *LIMITS, "--network=host", *env, image)
    try:
        await _until_ready(name, port)
        _report(pytestconfig, f"\nimage start-up to ready (`podman run -d` to /readyz 200): "
                              f"{time.monotonic() - started:.2f} s")
        health = _podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, f"the image's HEALTHCHECK failed: {health.stdout}{health.stderr}"
        state = json.loads(_podman("container", "inspect", name).stdout)[0]
        assert state["HostConfig"]["ReadonlyRootfs"] is True
        wrote = _podman("exec", name, "python", "-c", "open('/app/probe', 'w')", check=False)
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr, wrote.stderr
        assert _podman("exec", name, "id", "-u").stdout.strip() == "10001"

        base = f"http://127.0.0.1:{port}"
        code, quick = _http("POST", f"{base}/trigger", {"task_type": "noop", "payload": {}})
        assert code == 202 and quick["created"] is True
        await _until_status(empty_database_url, str(quick["job_id"]), "succeeded", name)

        # A job still running when SIGTERM arrives finishes inside the grace period; then exit 0.
        _, slow = _http("POST", f"{base}/trigger", {"task_type": "noop", "payload": {"sleep_s": 2}})
        await _until_status(empty_database_url, str(slow["job_id"]), "running", name)
        _podman("kill", "--signal", "TERM", name)
        exit_code = _podman("wait", name, timeout=GRACE_S + 20).stdout.strip()
        logs = _podman("logs", name).stdout + _podman("logs", name).stderr
        assert exit_code == "0", logs[-3000:]
        assert await _job_status(empty_database_url, str(slow["job_id"])) == "succeeded"
        events = [json.loads(line).get("event") for line in logs.splitlines() if line.startswith("{")]
        assert "daemon.stopped" in events
    finally:
        _podman("rm", "-f", "-t", "0", name, check=False)


async def _until_ready(name: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        running = _podman("container", "inspect", name, "--format", "{{.State.Running}}").stdout.strip()
        assert running == "true", _podman("logs", name).stderr[-3000:]
        assert time.monotonic() < deadline, "never ready: " + _podman("logs", name).stderr[-3000:]
        await asyncio.sleep(0.1)


async def _until_status(url: str, job_id: str, wanted: str, name: str) -> None:
    deadline = time.monotonic() + 30
    while (status := await _job_status(url, job_id)) != wanted:
        assert time.monotonic() < deadline, f"job {job_id} is {status}, not {wanted}: " + _podman("logs", name).stderr
        await asyncio.sleep(0.05)

"""One set of versions everywhere: the locks agree with pyproject.toml, carry hashes, and are what runs.

requirements-dev.lock (runtime + test, dev and demo extras) is what scripts/setup.sh installs, so what every test
run and CI uses; requirements.lock (runtime only, same versions) is what the Dockerfile installs. Both come from
`bash scripts/lock.sh`. The closure of pyproject's requirements is walked through the installed packages'
metadata, which is the locked metadata because the environment must equal the dev lock (checked here too).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
DEV_EXTRAS = ("test", "dev", "demo")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*\\)?$")


def _entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a `uv pip compile --generate-hashes` file."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _PIN.match(stripped)
        if match:
            current = canonicalize_name(match.group(1))
            assert current not in out, f"{path.name}: {current} pinned twice"
            out[current] = (match.group(2), [])
        elif stripped.startswith("--hash=") and current is not None:
            out[current][1].append(stripped.removeprefix("--hash=").rstrip(" \\"))
        else:
            pytest.fail(f"{path.name}: unexpected line (only pins and hashes, no index options): {line!r}")
    return out


def _pins(path: Path) -> dict[str, str]:
    return {name: version for name, (version, _) in _entries(path).items()}


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _roots(extras: tuple[str, ...]) -> list[Requirement]:
    project = _project()
    optional = project["optional-dependencies"]
    assert isinstance(optional, dict)
    names = list(project["dependencies"])  # type: ignore[call-overload]
    for extra in extras:
        names += optional[extra]
    return [Requirement(r) for r in names]


def _closure(roots: list[Requirement]) -> dict[str, list[Requirement]]:
    """Every distribution the roots need (markers evaluated here), with the requirements that ask for it."""
    needed: dict[str, list[Requirement]] = {}
    todo = [(r, "") for r in roots]
    while todo:
        req, via_extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": via_extra}):
            continue
        name = canonicalize_name(req.name)
        first = name not in needed
        needed.setdefault(name, []).append(req)
        if not first and not req.extras:
            continue
        dist = metadata.distribution(req.name)
        for raw in dist.requires or []:
            sub = Requirement(raw)
            for extra in ("", *sorted(req.extras)):
                if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                    todo.append((sub, extra))
                    break
    return needed


@pytest.mark.parametrize(("lock", "extras"), [(RUNTIME_LOCK, ()), (DEV_LOCK, DEV_EXTRAS)], ids=["runtime", "dev"])
def test_each_lock_pins_exactly_what_pyproject_requires_at_versions_its_ranges_allow(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pins = _pins(lock)
    needed = _closure(_roots(extras))
    assert sorted(set(needed) - set(pins)) == [], f"required but not pinned in {lock.name}: run scripts/lock.sh"
    assert sorted(set(pins) - set(needed)) == [], f"pinned but not required in {lock.name}: run scripts/lock.sh"
    for name, requirements in needed.items():
        for req in requirements:
            assert req.specifier.contains(Version(pins[name]), prereleases=True), (
                f"{lock.name} pins {name}=={pins[name]}, outside {req} (run scripts/lock.sh)"
            )


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_carries_sha256_hashes_and_no_index_option(lock: Path) -> None:
    entries = _entries(lock)
    assert entries
    for name, (_, hashes) in entries.items():
        assert hashes, f"{lock.name}: {name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (name, hashes)
    assert "file://" not in lock.read_text()


def test_the_image_lock_pins_the_same_versions_as_the_dev_lock() -> None:
    runtime, dev = _pins(RUNTIME_LOCK), _pins(DEV_LOCK)
    assert {name: (v, dev.get(name)) for name, v in runtime.items() if dev.get(name) != v} == {}


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_this_environment_runs_exactly_the_locked_versions(lock: Path) -> None:
    pins = _pins(lock)
    assert pins, f"{lock.name} pins nothing"
    installed = {}
    for name in pins:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = "missing"
    differ = {name: (version, installed[name]) for name, version in pins.items() if installed[name] != version}
    assert differ == {}, "(locked, installed): run scripts/setup.sh"


def test_setup_and_the_dockerfile_install_the_locks_with_hashes_and_the_project_without_deps() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"--require-hashes --no-deps -r requirements-dev\.lock", setup)
    assert re.search(r"--no-deps -e \.", setup)
    assert "[test" not in setup, "setup.sh must not resolve the extras' ranges"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install --require-hashes --no-deps -r requirements\.lock", dockerfile)
    assert re.search(r"pip install --no-deps /wheels/", dockerfile)

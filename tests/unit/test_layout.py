"""The import contracts in pyproject.toml cover every module at the top of the package: a new module of the core
is checked as soon as it exists (the contracts name the core's modules one by one, since they sit beside the
faces' and the runtime's packages)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import worker

ROOT = Path(__file__).resolve().parents[2]
NOT_CORE = {"worker.service", "worker.__init__", "worker.__main__"}


def test_every_top_level_module_is_in_the_core_contract_or_is_the_composition_root() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (core,) = [c for c in config["contracts"] if c["name"].startswith("the core imports nothing")]
    modules = {f"worker.{p.stem}" for p in Path(worker.__file__).parent.glob("*.py")} - NOT_CORE
    assert modules == set(core["source_modules"])

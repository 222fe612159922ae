"""The deployment files say what the code reads: kinds, probes, ports, grace periods, settings names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from worker.builtin import default_registry
from worker.discovery import task_setting_names
from worker.settings import Settings, env_names, load_settings
from worker.task_policy import apply_overrides, env_key

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

_ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _k8s_docs() if d["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    found = _by_kind(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


TASKS = default_registry()
TASK_SETTINGS = task_setting_names(TASKS)
"""The shipped tasks' own settings (the game platform's): read by the task, named in the deploy files too."""
SCHEDULES = {f"WORKER_SCHEDULE_{env_key(t.name)}": t for t in TASKS if t.schedules}
"""The older per-schedule variables (WORKER_SCHEDULE_<NAME>), still read as the task's SCHEDULES override."""


def _known() -> set[str]:
    core = {env for field, env in env_names().items() if not Settings.model_fields[field].exclude}
    return core | set(TASK_SETTINGS) | set(SCHEDULES)


def _example_names() -> list[str]:
    return _ENV_LINE.findall(ENV_EXAMPLE.read_text())


def test_env_example_lists_every_setting_once_and_nothing_else() -> None:
    names = _example_names()
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert set(names) - _known() == set(), "names the settings do not read"
    assert _known() - set(names) == set(), "settings missing from .env.example"


def test_env_example_loads_as_a_valid_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name in _known() or name.startswith("WORKER_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.dsn.startswith("postgresql://")
    assert settings.http_port == 8080
    sync = apply_overrides(TASKS, settings).get("game_platform_sync")
    assert sync.schedules == ("0 * * * *",)


def test_env_example_defaults_match_the_settings_defaults() -> None:
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    field_of = {env: field for field, env in env_names().items()}
    for env, raw in values.items():
        if env in SCHEDULES:  # the task's declared schedule
            assert (raw,) == SCHEDULES[env].schedules, env
            continue
        model, name = TASK_SETTINGS[env] if env in TASK_SETTINGS else (Settings, field_of[env])
        field = model.model_fields[name]
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if default is None:
            continue
        if isinstance(default, dict):
            assert json.loads(raw) == default, env
        elif isinstance(default, bool):
            assert raw == str(default).lower(), env
        elif isinstance(default, int | float):
            assert float(raw) == float(default), env
        else:
            assert raw == str(default), env


def test_env_file_is_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def test_deployment_has_two_replicas_probes_resources_and_settings_from_configmap_and_secret() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = _one("ConfigMap")["data"]
    assert ports["http"] == int(config["WORKER_HTTP_PORT"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert set(container["resources"]) == {"requests", "limits"}
    sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"configMapRef": _one("ConfigMap")["metadata"]["name"],
                       "secretRef": _one("Secret")["metadata"]["name"]}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_termination_grace_period_exceeds_the_worker_shutdown_grace() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    grace_s = float(_one("ConfigMap")["data"]["WORKER_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > grace_s
    assert Settings.model_fields["shutdown_grace_s"].default < pod["terminationGracePeriodSeconds"]


def test_every_env_name_in_the_manifests_is_a_real_setting() -> None:
    names: set[str] = set(_one("ConfigMap")["data"]) | set(_one("Secret")["stringData"])
    for doc in _by_kind("Deployment") + _by_kind("Job"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in _one("Secret")["stringData"]
    assert names, "no settings found"
    assert names - _known() == set()


def test_service_pdb_and_migration_job_select_and_run_the_worker() -> None:
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < _one("Deployment")["spec"]["replicas"]
    job = _one("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert job["spec"]["template"]["metadata"]["labels"].items() != labels.items(), (
        "the migration pod must not be selected by the Service"
    )


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_compose_runs_postgres_migrate_then_worker_and_the_simulator() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "worker", "simulator"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["command"] == ["run"]
    depends = services["worker"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["simulator"]["condition"] == "service_healthy"
    for name in ("postgres", "worker", "simulator"):
        assert "healthcheck" in services[name], name
    assert "/healthz" in " ".join(services["worker"]["healthcheck"]["test"])
    for name in ("migrate", "worker", "simulator"):
        assert services[name]["env_file"] == "../.env"
        assert set(services[name]["environment"]) <= _known()
    grace = services["worker"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > Settings.model_fields["shutdown_grace_s"].default


def test_dockerfile_runs_the_worker_as_non_root_pid_1_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
    assert len(stages) >= 2, "multi-stage"
    assert "python:3.11-slim" in text
    assert re.search(r"pip install .*-r requirements\.lock", text)
    runtime = text.split(f"AS {stages[-1]}", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0:", "0")), user
    assert re.search(r'^ENTRYPOINT \["worker"\]$', runtime, re.MULTILINE)
    assert re.search(r'^CMD \["run"\]$', runtime, re.MULTILINE)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", runtime, re.MULTILINE)


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    import tomllib

    pins = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    normalized = {re.sub(r"[-_.]+", "-", k).lower() for k in pins}
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in normalized, f"{name} is not pinned"


def test_dockerignore_keeps_secrets_out_of_the_build_context() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in lines and ".env" in lines


# --- the KEDA overlay (deploy/k8s/keda/): replicas that follow the queue's depth ---------------------------------
KEDA = K8S / "keda"
_TRIGGER_QUERY = re.compile(
    r"^SELECT coalesce\(sum\(n\), 0\) FROM \((?P<named>.*)\) AS due WHERE task_type = '(?P<t>[a-z_.:-]+)'$", re.DOTALL
)


def _keda_docs() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    docs: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        if name.endswith(".yaml"):
            for doc in yaml.safe_load_all((KEDA / name).read_text()):
                assert doc["kind"] not in docs, doc["kind"]
                docs[doc["kind"]] = doc
    return docs


def _keda_triggers() -> dict[str, dict[str, Any]]:
    """task type -> its trigger, each query checked to be the metrics' named query for that one task type."""
    from worker.sql import queries

    text = queries("stats")["due_pending_by_task_type"]
    named = "\n".join(line for line in text.splitlines() if not line.startswith("--")).strip()  # its comments aside
    by_type: dict[str, dict[str, Any]] = {}
    for trigger in _keda_docs()["ScaledObject"]["spec"]["triggers"]:
        assert trigger["type"] == "postgresql"
        match = _TRIGGER_QUERY.match(trigger["metadata"]["query"].strip())
        assert match, trigger["metadata"]["query"]
        assert match["named"] == named, "the trigger must embed sql/queries/stats.sql's due_pending_by_task_type"
        assert match["t"] not in by_type
        by_type[match["t"]] = trigger
    return by_type


def test_keda_component_lists_its_manifests_and_hands_the_replica_count_to_the_scaler() -> None:
    kustomization = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    assert set(kustomization["resources"]) == {p.name for p in KEDA.glob("*.yaml")} - {
        "kustomization.yaml", "deployment-replicas.yaml"}
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": _one("Deployment")["metadata"]["name"]}
    assert yaml.safe_load((KEDA / patch["path"]).read_text()) == [{"op": "remove", "path": "/spec/replicas"}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_kustomize_renders_the_base_with_the_keda_component_from_an_overlay_beside_it(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../k8s"], "components": ["../k8s/keda"]}))
    out = subprocess.run(["kubectl", "kustomize", str(tmp_path / "prod")], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    rendered = {d["kind"]: d for d in yaml.safe_load_all(out.stdout)}
    assert {"ScaledObject", "TriggerAuthentication", "Deployment", "Secret"} <= set(rendered)
    assert "replicas" not in rendered["Deployment"]["spec"]
    assert rendered["ScaledObject"]["spec"]["scaleTargetRef"]["name"] == rendered["Deployment"]["metadata"]["name"]


def test_keda_scaledobject_scales_the_deployment_with_a_floor_of_one_for_the_schedules() -> None:
    docs = _keda_docs()
    scaled = docs["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"name": _one("Deployment")["metadata"]["name"]}
    assert spec["minReplicaCount"] == 1, "the built-in schedules enqueue from a running worker: never zero"
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    assert spec["maxReplicaCount"] * int(_one("ConfigMap")["data"]["WORKER_DB_POOL_SIZE"]) <= 100, (
        "every replica's pool must fit the server's connections"
    )
    auth = docs["TriggerAuthentication"]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "connection"
    assert ref["name"] == _one("Secret")["metadata"]["name"] and ref["key"] in _one("Secret")["stringData"]
    for trigger in _keda_triggers().values():
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert int(trigger["metadata"]["targetQueryValue"]) >= 1
        assert int(trigger["metadata"]["activationTargetQueryValue"]) >= 0


def test_keda_has_one_trigger_per_built_in_task_type_except_the_noop_canary() -> None:
    from worker.builtin import default_registry

    assert set(_keda_triggers()) == set(default_registry().names()) - {"noop"}


async def test_keda_trigger_queries_count_the_due_pending_jobs_the_admin_page_and_metrics_count(
    conn: asyncpg.Connection,
) -> None:
    from worker.metrics import Metrics
    from worker.sql import queries

    rows = [  # (task type, status, run_at offset in seconds): due pending counts 3 cleanup, 2 game_platform_sync
        ("cleanup", "pending", -60), ("cleanup", "pending", -1), ("cleanup", "pending", -3600),
        ("cleanup", "pending", 3600), ("cleanup", "succeeded", -60), ("cleanup", "failed", -60),
        ("game_platform_sync", "pending", -5), ("game_platform_sync", "pending", -5),
        ("game_platform_sync", "pending", 60), ("game_platform_sync", "cancelled", -5),
        ("noop", "pending", -5),
    ]
    for task_type, status, offset in rows:
        await conn.execute(
            "INSERT INTO job_queue (task_type, status, run_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
            task_type, status, float(offset),
        )
    await conn.execute(
        "INSERT INTO job_queue (task_type, status, run_at, locked_by, locked_until) "
        "VALUES ('cleanup', 'running', now() - interval '1 minute', 'w', now() + interval '1 minute')"
    )
    counted = {t: int(await conn.fetchval(trigger["metadata"]["query"])) for t, trigger in _keda_triggers().items()}
    assert counted == {"cleanup": 3, "game_platform_sync": 2}
    admin = await conn.fetchrow(queries("stats")["oldest_due_pending"])
    assert sum(counted.values()) + 1 == admin["n"]  # + the noop job, which no trigger follows
    metrics = Metrics(["cleanup", "game_platform_sync", "noop"])
    assert await metrics.refresh(conn)
    gauge = re.findall(r'^worker_jobs_due_pending\{task_type="([^"]+)"\} (\S+)$', metrics.render().decode(), re.M)
    assert {t: float(v) for t, v in gauge} == {"cleanup": 3.0, "game_platform_sync": 2.0, "noop": 1.0}

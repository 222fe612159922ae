"""The operator CLI, run in-process against a real database: output, exit codes, and that a rejected command
changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.support.rows import count_jobs, execute, fetch, fetchval, make_job_sync, snapshot
from worker.cli.main import main


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")
    monkeypatch.setenv("WORKER_WORKER_ID", "cli-test")

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_json(cli: Any, *argv: str) -> Any:
    code, out, err = cli(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_rejected(cli: Any, url: str, argv: list[str], code: int, needle: str) -> None:
    before = snapshot(url)
    got, out, err = cli(*argv)
    assert got == code, (out, err)
    assert err.count("\n") == 1 and needle in err, err
    assert snapshot(url) == before


# --- enqueue --------------------------------------------------------------------------------------
def test_enqueue_creates_a_job_and_a_repeated_dedupe_key_returns_the_same_job(cli: Any, database_url: str) -> None:
    first = run_json(cli, "enqueue", "noop", "--payload", '{"sleep_s": 0}', "--priority", "5",
                     "--max-attempts", "2", "--dedupe-key", "k1")
    second = run_json(cli, "enqueue", "noop", "--dedupe-key", "k1")
    assert first["created"] is True and second == {"id": first["id"], "created": False}
    row = fetch(database_url, "SELECT task_type, payload, priority, max_attempts FROM job_queue")[0]
    assert tuple(row) == ("noop", {"sleep_s": 0}, 5, 2)
    code, out, _ = cli("enqueue", "noop", "--run-at", "1h")
    assert code == 0 and out.startswith("enqueued ")
    assert fetchval(database_url, "SELECT count(*) FROM job_queue WHERE run_at > now() + interval '50 minutes'") == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["enqueue", "no_such_task"], "unknown task type 'no_such_task'"),
        (["enqueue", "noop", "--payload", "{bad"], "--payload is not valid JSON"),
        (["enqueue", "noop", "--payload", "[1]"], "must be a JSON object"),
        (["enqueue", "noop", "--payload", '{"sleep_s": -1}'], "invalid payload for noop"),
        (["enqueue", "noop", "--run-at", "tomorrow"], "--run-at"),
        (["enqueue", "noop", "--priority", "5000"], "priority"),
        (["enqueue", "noop", "--priority", "high"], "invalid int value"),
    ],
)
def test_enqueue_rejects_bad_input_with_exit_2_and_creates_nothing(
    cli: Any, database_url: str, argv: list[str], needle: str
) -> None:
    assert_rejected(cli, database_url, argv, 2, needle)
    assert count_jobs(database_url) == 0


# --- list / show ----------------------------------------------------------------------------------
def test_jobs_list_filters_and_pages_with_a_keyset_cursor(cli: Any, database_url: str) -> None:
    ids = [make_job_sync(database_url, age_s=100 - i) for i in range(5)]
    failed = make_job_sync(database_url, status="failed", error="boom")
    make_job_sync(database_url, task_type="cleanup", status="succeeded")
    page1 = run_json(cli, "jobs", "list", "--status", "pending", "--limit", "3")
    assert [j["id"] for j in page1["jobs"]] == [str(i) for i in reversed(ids[2:])]
    page2 = run_json(cli, "jobs", "list", "--status", "pending", "--limit", "3", "--after", page1["next_after"])
    assert [j["id"] for j in page2["jobs"]] == [str(ids[1]), str(ids[0])] and page2["next_after"] is None
    only_failed = run_json(cli, "jobs", "list", "--status", "failed", "--task-type", "noop")
    assert [j["id"] for j in only_failed["jobs"]] == [str(failed)]
    assert run_json(cli, "jobs", "list", "--task-type", "cleanup", "--since", "1h")["jobs"][0]["status"] == "succeeded"
    code, out, _ = cli("jobs", "list", "--status", "failed")
    assert code == 0 and "ID" in out.splitlines()[0] and str(failed) in out and "boom" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["jobs", "list", "--status", "done"], "invalid choice"),
        (["jobs", "list", "--since", "yesterday"], "not a time or duration"),
        (["jobs", "list", "--limit", "0"], "limit must be between"),
        (["jobs", "list", "--task-type", "Bad Type"], "task type must be"),
        (["jobs", "list", "--after", "nope"], "not a job id"),
    ],
)
def test_jobs_list_rejects_bad_filters(cli: Any, database_url: str, argv: list[str], needle: str) -> None:
    assert_rejected(cli, database_url, argv, 2, needle)


def test_jobs_show_prints_payload_result_error_and_every_attempt(cli: Any, database_url: str) -> None:
    job_id = make_job_sync(database_url, status="failed", payload={"sleep_s": 0.5}, error="RuntimeError: x")
    execute(database_url, "INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, "
            "error, duration_ms) VALUES ($1, 2, 'w2', now(), now(), 'failed', 'RuntimeError: y', 7)", job_id)
    shown = run_json(cli, "jobs", "show", str(job_id))
    assert shown["payload"] == {"sleep_s": 0.5} and shown["last_error"] == "RuntimeError: x"
    assert [(r["attempt"], r["error"]) for r in shown["runs"]] == [(1, "RuntimeError: x"), (2, "RuntimeError: y")]
    code, out, _ = cli("jobs", "show", str(job_id))
    assert code == 0 and '"sleep_s": 0.5' in out and "RuntimeError: y" in out and "attempts" in out


def test_jobs_show_rejects_a_malformed_id_with_2_and_an_unknown_one_with_1(cli: Any, database_url: str) -> None:
    assert_rejected(cli, database_url, ["jobs", "show", "123"], 2, "not a job id")
    missing = uuid.uuid4()
    assert_rejected(cli, database_url, ["jobs", "show", str(missing)], 1, f"no job {missing}")


# --- retry / cancel -------------------------------------------------------------------------------
def test_jobs_retry_by_id_requeues_a_failed_job(cli: Any, database_url: str) -> None:
    job_id = make_job_sync(database_url, status="failed", age_s=60)
    assert run_json(cli, "jobs", "retry", str(job_id)) == {"retried": [str(job_id)]}
    assert fetchval(database_url, "SELECT status FROM job_queue WHERE id = $1", job_id) == "pending"


def test_jobs_retry_refuses_a_succeeded_job_and_changes_nothing(cli: Any, database_url: str) -> None:
    failed = make_job_sync(database_url, status="failed")
    done = make_job_sync(database_url, status="succeeded")
    assert_rejected(cli, database_url, ["jobs", "retry", str(failed), str(done)], 1, "it is succeeded")


def test_bulk_retry_replays_only_the_jobs_matching_the_filter(cli: Any, database_url: str) -> None:
    recent = make_job_sync(database_url, status="failed", age_s=600)
    old = make_job_sync(database_url, status="failed", age_s=3 * 86400)
    other_type = make_job_sync(database_url, task_type="cleanup", status="failed", age_s=600)
    cancelled = make_job_sync(database_url, status="cancelled", age_s=600)
    out = run_json(cli, "jobs", "retry", "--status", "failed", "--task-type", "noop", "--since", "1d")
    assert out == {"retried": [str(recent)]}
    statuses = dict(fetch(database_url, "SELECT id, status FROM job_queue"))
    assert statuses == {recent: "pending", old: "failed", other_type: "failed", cancelled: "cancelled"}


def test_bulk_retry_skips_a_job_whose_dedupe_key_is_held_by_a_live_job(cli: Any, database_url: str) -> None:
    make_job_sync(database_url, status="pending", dedupe_key="k")
    held = make_job_sync(database_url, status="failed", dedupe_key="k")
    free = make_job_sync(database_url, status="failed", dedupe_key="other")
    assert run_json(cli, "jobs", "retry", "--status", "failed") == {"retried": [str(free)]}
    assert fetchval(database_url, "SELECT status FROM job_queue WHERE id = $1", held) == "failed"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["jobs", "retry"], "give job ids, or --status"),
        (["jobs", "retry", "--status", "succeeded"], "invalid choice"),
        (["jobs", "retry", "--status", "failed", "--since", "1x"], "not a time or duration"),
        (["jobs", "retry", "--status", "failed", str(uuid.uuid4())], "not both"),
    ],
)
def test_bulk_retry_rejects_bad_usage(cli: Any, database_url: str, argv: list[str], needle: str) -> None:
    make_job_sync(database_url, status="failed")
    assert_rejected(cli, database_url, argv, 2, needle)


def test_jobs_cancel_cancels_pending_jobs_and_refuses_finished_ones_atomically(cli: Any, database_url: str) -> None:
    a = make_job_sync(database_url)
    done = make_job_sync(database_url, status="succeeded")
    assert_rejected(cli, database_url, ["jobs", "cancel", str(a), str(done)], 1, "cannot cancel")
    assert run_json(cli, "jobs", "cancel", str(a), "--reason", "operator") == {"cancelled": [str(a)]}
    assert tuple(fetch(database_url, "SELECT status, last_error FROM job_queue WHERE id = $1", a)[0]) == (
        "cancelled", "operator")


# --- run-now --------------------------------------------------------------------------------------
def test_run_now_runs_a_pending_job_here_even_when_everything_is_paused(cli: Any, database_url: str) -> None:
    ok = make_job_sync(database_url, payload={})
    bad = make_job_sync(database_url, payload={"fail": "nope", "permanent": True})
    assert cli("pause")[0] == 0
    out = run_json(cli, "jobs", "run-now", str(ok))
    assert out["status"] == "succeeded"
    code, text, _ = cli("jobs", "run-now", str(bad))
    assert code == 1 and "failed" in text and "nope" in text
    rows = dict(fetch(database_url, "SELECT id, status FROM job_queue"))
    assert rows == {ok: "succeeded", bad: "failed"}
    assert fetchval(database_url, "SELECT worker_id FROM job_runs WHERE job_id = $1", ok) == "cli:cli-test"


def test_run_now_refuses_a_job_that_is_not_pending(cli: Any, database_url: str) -> None:
    done = make_job_sync(database_url, status="succeeded")
    assert_rejected(cli, database_url, ["jobs", "run-now", str(done)], 1, "it is succeeded")
    assert_rejected(cli, database_url, ["jobs", "run-now", "x"], 2, "not a job id")


# --- archive --------------------------------------------------------------------------------------
def test_jobs_archive_moves_jobs_and_history_and_refuses_unfinished_ones(cli: Any, database_url: str) -> None:
    done = make_job_sync(database_url, status="succeeded", age_s=10)
    pending = make_job_sync(database_url)
    assert_rejected(cli, database_url, ["jobs", "archive", str(done), str(pending)], 1, "it is pending")
    assert_rejected(cli, database_url, ["jobs", "archive"], 2, "--older-than")
    assert run_json(cli, "jobs", "archive", str(done)) == {"archived_jobs": 1, "archived_runs": 1}
    assert fetchval(database_url, "SELECT count(*) FROM job_queue WHERE id = $1", done) == 0
    assert fetchval(database_url, "SELECT count(*) FROM job_runs_archive WHERE job_id = $1", done) == 1
    old = make_job_sync(database_url, status="failed", age_s=40 * 86400)
    make_job_sync(database_url, status="failed", age_s=60)
    out = run_json(cli, "jobs", "archive", "--older-than", "30d", "--status", "failed")
    assert out == {"archived_jobs": 1, "archived_runs": 1}
    assert fetchval(database_url, "SELECT status FROM job_queue_archive WHERE id = $1", old) == "failed"


# --- pause / resume / cleanup / schedules / doctor ------------------------------------------------
def test_pause_and_resume_set_and_clear_the_flags(cli: Any, database_url: str) -> None:
    assert cli("pause", "noop", "--reason", "maintenance")[0] == 0
    assert cli("pause")[0] == 0
    assert {r["task_type"] for r in fetch(database_url, "SELECT task_type FROM job_queue_pause")} == {"noop", "*"}
    out = run_json(cli, "resume")
    assert out == {"task_type": "*", "resumed": True, "still_paused": ["noop"]}
    code, text, _ = cli("resume", "noop")
    assert code == 0 and "resumed noop" in text
    code, text, _ = cli("resume", "noop")
    assert code == 0 and "was not paused" in text
    assert fetchval(database_url, "SELECT count(*) FROM job_queue_pause") == 0


def test_pause_of_an_unknown_task_type_is_refused(cli: Any, database_url: str) -> None:
    assert_rejected(cli, database_url, ["pause", "no_such_task"], 2, "unknown task type")
    assert_rejected(cli, database_url, ["resume", "no_such_task"], 2, "unknown task type")


def test_cleanup_deletes_old_finished_jobs_and_keeps_the_rest(cli: Any, database_url: str) -> None:
    old = make_job_sync(database_url, status="succeeded", age_s=3 * 86400)
    young = make_job_sync(database_url, status="succeeded", age_s=3600)
    old_failed = make_job_sync(database_url, status="failed", age_s=3 * 86400)
    out = run_json(cli, "cleanup", "--older-than", "2d")
    assert out == {"jobs": 1, "succeeded": 1, "runs": 1, "batches": 1}
    remaining = {r["id"] for r in fetch(database_url, "SELECT id FROM job_queue")}
    assert remaining == {young, old_failed} and old not in remaining
    assert_rejected(cli, database_url, ["cleanup", "--older-than", "14days"], 2, "not a duration")
    assert_rejected(cli, database_url, ["cleanup", "--older-than", "0d"], 2, "out of range")


def test_schedules_lists_each_schedule_with_its_next_fire_time(
    cli: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_SCHEDULE_GAME_PLATFORM_SYNC", "")
    rows = run_json(cli, "schedules")
    by_name = {r["name"]: r for r in rows}
    assert by_name["game_platform_sync"]["enabled"] is False and by_name["game_platform_sync"]["next"] is None
    assert by_name["cleanup"]["cron"] == "15 3 * * *" and by_name["cleanup"]["next"].endswith("03:15:00+00:00")
    code, out, _ = cli("schedules")
    assert code == 0 and "cleanup" in out and "NEXT" in out


def test_doctor_exits_0_when_healthy_and_1_when_a_check_fails(cli: Any, database_url: str) -> None:
    report = run_json(cli, "doctor")
    assert report["ok"] is True and {c["name"] for c in report["checks"]} >= {"database", "migrations", "notify"}
    make_job_sync(database_url, status="failed", age_s=60)
    code, out, _ = cli("doctor")
    assert code == 1 and "failures_last_hour" in out and "fail" in out


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["jobs", "--help"], ["jobs", "list", "--help"], ["jobs", "show", "--help"],
     ["jobs", "retry", "--help"], ["jobs", "cancel", "--help"], ["jobs", "run-now", "--help"],
     ["jobs", "archive", "--help"], ["enqueue", "--help"], ["pause", "--help"], ["resume", "--help"],
     ["cleanup", "--help"], ["schedules", "--help"], ["doctor", "--help"]],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "usage: worker" in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["jobs", "explode"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_every_command_in_the_playbook_parses() -> None:
    import re
    import shlex
    from pathlib import Path

    from worker.cli.main import build_parser

    text = (Path(__file__).resolve().parent.parent / "docs" / "playbook.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands += re.findall(r"`(worker [^`]+)`", text)
    seen = 0
    for command in commands:
        if not command.startswith("worker "):
            continue
        argv = shlex.split(command.replace("<ID>", str(uuid.uuid4())).replace("<job_id>", str(uuid.uuid4()))
                           .replace("[TYPE]", "noop").replace("<type>", "noop").replace("...", ""))[1:]
        argv = [a for a in argv if not a.startswith("[")]
        build_parser().parse_args(argv)  # a usage error raises SystemExit and fails the test
        seen += 1
    assert seen >= 20


def test_an_error_never_echoes_a_configured_secret(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "adm1n-t0ken-do-not-print"
    monkeypatch.setenv("WORKER_ADMIN_TOKEN", secret)
    code, out, err = cli("jobs", "show", secret)  # a secret pasted where an id belongs
    assert code == 2
    assert "not a job id" in err and "[REDACTED]" in err
    assert secret not in out + err


def test_the_cli_parser_loads_no_http_stack_and_no_other_face() -> None:
    # `worker run` and every operator command build this parser first: what it imports, each of them pays for
    # at start (httpx, Starlette and uvicorn were ~140 ms of a daemon's start-up).
    code = (
        "import sys\n"
        "from worker.cli.main import build_parser\n"
        "build_parser().parse_args(['run'])\n"
        "heavy = ('httpx', 'starlette', 'uvicorn', 'worker.cli.doctor', 'worker.cli.demo',\n"
        "         'worker.game_platform.simulator')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""

"""Redaction: no secret value reaches the logs (or Sentry), wherever it appears, URLs included."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import structlog

from tests.support.daemon import make_settings, wait_for
from tests.support.sentry_receiver import SentryReceiver
from worker.logs import configure_logging, install_redaction, job_lines
from worker.redaction import REDACTED, Redactor


def test_redactor_removes_secrets_from_nested_values_and_urls() -> None:
    r = Redactor(["s3cr3t-token", "p@ss/word", ""])
    event = {
        "event": "x",
        "error": "auth failed for s3cr3t-token",
        "url": "postgresql://u:p%40ss%2Fword@db:5432/app",
        "nested": {"list": ["ok", ("p@ss/word",)], "n": 3, "flag": True, "none": None},
        "obj": ValueError("token=s3cr3t-token"),
    }
    out = r(None, "info", dict(event))
    text = json.dumps(out, default=str)
    assert "s3cr3t-token" not in text
    assert "p@ss/word" not in text and "p%40ss%2Fword" not in text
    assert out["url"] == f"postgresql://u:{REDACTED}@db:5432/app"
    assert out["nested"]["n"] == 3 and out["nested"]["flag"] is True and out["nested"]["none"] is None
    assert out["obj"] == f"token={REDACTED}"


def test_redactor_removes_a_longer_secret_whole_before_a_shorter_one_inside_it() -> None:
    r = Redactor(["abc", "abcdef"])
    assert r.redact_text("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"


def test_redactor_without_secrets_changes_nothing() -> None:
    event = {"event": "x", "value": "anything"}
    assert Redactor([])(None, "info", dict(event)) == event


def test_configured_logging_prints_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    old = structlog.get_config()
    try:
        configure_logging("info", "json", secrets=["hunter2-key"])
        structlog.get_logger("t").info("login", header="Bearer hunter2-key", url="http://x:hunter2-key@h/")
        install_redaction(["second-secret"])  # replaces the redactor in the current configuration
        structlog.get_logger("t").info("again", a="second-secret", b="hunter2-key")
    finally:
        structlog.configure(**old)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["header"] == f"Bearer {REDACTED}"
    assert lines[0]["url"] == f"http://x:{REDACTED}@h/"
    assert lines[1]["a"] == REDACTED
    assert lines[1]["b"] == "hunter2-key"  # no longer a configured secret


def test_a_job_success_line_is_not_scanned_while_an_error_field_with_a_secret_is_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-job lines cost no secret scan: their identity fields (job id, task type, attempt, worker id,
    duration) are checked once per distinct value, or not at all where no secret could be spelled in them;
    free-text fields (an error, an exception) and the bound context are still redacted."""
    secret = "Tok-9fQz-hunter2"
    old = structlog.get_config()
    scanned: list[object] = []

    def spy(method: str) -> None:
        real = getattr(Redactor, method)

        def wrapper(self: Redactor, value: object, *args: object) -> object:
            scanned.append(value)
            return real(self, value, *args)

        monkeypatch.setattr(Redactor, method, wrapper)

    try:
        configure_logging("info", "json", secrets=[secret])
        for method in ("__call__", "redact", "redact_text"):
            spy(method)
        log = structlog.get_logger("t")
        fields = {"task_type": "noop", "attempt": 1, "worker_id": "host-1-abc"}
        with job_lines(log) as blog:  # a first batch: the repeated values are seen once
            blog.info("job.succeeded", job_id=str(uuid.uuid4()), duration_ms=0.2, **fields)
        scanned.clear()
        with job_lines(log) as blog:
            for _ in range(3):
                blog.info("job.succeeded", job_id=str(uuid.uuid4()), duration_ms=0.3, **fields)
        assert scanned == []
        with structlog.contextvars.bound_contextvars(request=f"token {secret}"), job_lines(log) as blog:
            blog.warning("job.failed", job_id=str(uuid.uuid4()), duration_ms=1.0,
                         error=f"connect to postgresql://u:{secret}@db/app failed", **fields)
    finally:
        structlog.configure(**old)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["job.succeeded"] * 4 + ["job.failed"]
    assert lines[-1]["error"] == f"connect to postgresql://u:{REDACTED}@db/app failed"
    assert lines[-1]["request"] == f"token {REDACTED}"
    assert all(secret not in json.dumps(line) for line in lines)
    assert lines[1]["worker_id"] == "host-1-abc" and lines[1]["task_type"] == "noop"


def test_job_lines_redact_identity_fields_that_hold_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """A worker id or a task type holding a secret, or a secret spelled in a job id's alphabet, is still
    removed from the per-job lines."""
    old = structlog.get_config()
    job_id = "5f0c2a4e-0b1d-4c3e-9a7f-123456789abc"
    try:
        configure_logging("info", "json", secrets=["hunter2-key", "9a7f-1234"])
        with job_lines(structlog.get_logger("t")) as blog:
            for _ in range(2):  # the second line comes from the remembered values
                blog.info("job.succeeded", job_id=job_id, task_type="noop", attempt=1, duration_ms=0.1,
                          worker_id="host-hunter2-key")
    finally:
        structlog.configure(**old)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["worker_id"] for line in lines] == [f"host-{REDACTED}"] * 2
    assert [line["job_id"] for line in lines] == [f"5f0c2a4e-0b1d-4c3e-{REDACTED}56789abc"] * 2


async def _read_lines(stream: asyncio.StreamReader, sink: list[str]) -> None:
    while line := await stream.readline():
        sink.append(line.decode(errors="replace"))


async def test_a_daemon_with_every_secret_set_logs_none_of_them(database_url: str, tmp_path: Path) -> None:
    db_password = "dbpw%40Zq9-7731"  # percent-encoded in the URL: the driver sends "dbpw@Zq9-7731"
    parts = urlsplit(database_url)
    url_with_password = urlunsplit(parts._replace(netloc=f"postgres:{db_password}@{parts.hostname}:{parts.port}"))
    secrets = {
        "JOB_QUEUE_RUNNER_SECRET": "runner-cur-4b1d9e",
        "JOB_QUEUE_RUNNER_SECRET_PREVIOUS": "runner-prev-8c2f0a",
        "WORKER_ADMIN_TOKEN": "admin-tok-5e7a11",
        "GAME_PLATFORM_API_KEY": "gp-key-93d0c4",
    }
    with SentryReceiver() as receiver:
        sentry_key = "sentrykey0f3e9a"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "JOB_QUEUE_", "SENTRY_"))}
        env.update(secrets)
        env.update({
            "DATABASE_URL": url_with_password,
            "SENTRY_DSN": receiver.dsn(sentry_key),
            "WORKER_HTTP_HOST": "127.0.0.1",
            "WORKER_HTTP_PORT": "0",
            "WORKER_LOG_FORMAT": "json",
            "WORKER_LOG_LEVEL": "debug",
            "WORKER_SCHEDULES_ENABLED": "false",
            "WORKER_WORKER_ID": "redaction-test",
        })
        settings = make_settings(
            url_with_password, runner_secret=secrets["JOB_QUEUE_RUNNER_SECRET"],
            runner_secret_previous=secrets["JOB_QUEUE_RUNNER_SECRET_PREVIOUS"],
            admin_token=secrets["WORKER_ADMIN_TOKEN"], game_platform_api_key=secrets["GAME_PLATFORM_API_KEY"],
            sentry_dsn=receiver.dsn(sentry_key),
        )
        forbidden = {*settings.secret_values(), "dbpw@Zq9-7731", *secrets.values(), sentry_key}
        assert db_password in forbidden

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out: list[str] = []
        err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        readers = [asyncio.create_task(_read_lines(proc.stdout, out)),
                   asyncio.create_task(_read_lines(proc.stderr, err))]
        try:
            async def listening() -> bool:
                return any('"http.listening"' in line for line in out)

            await wait_for(listening, timeout_s=20)
            port = next(json.loads(line)["port"] for line in out if '"http.listening"' in line)
            token = {"Authorization": f"Bearer {secrets['JOB_QUEUE_RUNNER_SECRET_PREVIOUS']}"}
            leak = (f"boom {secrets['GAME_PLATFORM_API_KEY']} {url_with_password} "
                    f"{secrets['WORKER_ADMIN_TOKEN']} {secrets['JOB_QUEUE_RUNNER_SECRET']}")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                ok = await client.post("/trigger", headers=token, json={"task_type": "noop"})
                bad = await client.post(
                    "/trigger", headers=token, json={"task_type": "noop", "payload": {"fail": leak, "permanent": True}}
                )
                denied = await client.post(
                    "/trigger", headers={"Authorization": f"Bearer {secrets['JOB_QUEUE_RUNNER_SECRET']}-wrong"}
                )
            assert (ok.status_code, bad.status_code, denied.status_code) == (202, 202, 401)
            conn = await asyncpg.connect(database_url)
            try:
                async def finished() -> bool:
                    rows = await conn.fetch("SELECT status FROM job_queue WHERE id = ANY($1::uuid[])",
                                            [uuid.UUID(ok.json()["job_id"]), uuid.UUID(bad.json()["job_id"])])
                    return sorted(r["status"] for r in rows) == ["failed", "succeeded"]

                await wait_for(finished)
            finally:
                await conn.close()
            await asyncio.to_thread(receiver.wait_for_events, 1)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 20)
            await asyncio.gather(*readers)
        sentry_text = json.dumps(receiver.events())
    output = "".join(out) + "".join(err)
    assert code == 0, output
    events = [json.loads(line)["event"] for line in out if line.startswith("{")]
    for expected in ("job.succeeded", "job.failed_permanently", "http.unauthorized", "daemon.stopped"):
        assert expected in events, output
    assert REDACTED in output
    assert REDACTED in sentry_text
    for secret in forbidden:
        assert secret not in output, f"a secret leaked into the logs: {secret[:3]}..."
        assert secret not in sentry_text, f"a secret leaked into Sentry: {secret[:3]}..."

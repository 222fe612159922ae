"""The JSON log lines: their fields, and how they reach stdout (buffered within one event-loop iteration)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid

import pytest
import structlog
from structlog.testing import capture_logs

from worker.logs import configure_logging, job_event, job_lines


@pytest.fixture
def json_logging() -> object:
    old = structlog.get_config()
    configure_logging("info", "json")
    yield
    structlog.configure(**old)


@pytest.mark.usefixtures("json_logging")
def test_a_line_carries_level_and_utc_timestamp_with_microseconds(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.get_logger("t").warn("disk.low", free_mb=12)
    structlog.get_logger("t").exception("oops")
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["level"] == "warning"
    assert first["free_mb"] == 12
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["timestamp"]), first
    assert second["level"] == "error"
    assert first["timestamp"] <= second["timestamp"]


@pytest.mark.usefixtures("json_logging")
async def test_lines_logged_inside_the_loop_reach_stdout_in_order_by_the_next_iteration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = structlog.get_logger("t")
    for i in range(5):
        log.info("step", i=i)
    assert capsys.readouterr().out == ""  # still buffered in this iteration
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [json.loads(line)["i"] for line in capsys.readouterr().out.splitlines()] == [0, 1, 2, 3, 4]


@pytest.mark.usefixtures("json_logging")
def test_lines_from_a_loop_that_closed_before_writing_them_are_not_lost(capsys: pytest.CaptureFixture[str]) -> None:
    loop = asyncio.new_event_loop()

    def log_in_the_last_iteration() -> None:
        structlog.get_logger("t").info("first")
        loop.stop()

    loop.call_soon(log_in_the_last_iteration)
    loop.run_forever()
    loop.close()  # the write scheduled in that loop never ran
    assert capsys.readouterr().out == ""

    async def log_again() -> None:
        structlog.get_logger("t").info("second")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(log_again())
    assert [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()] == ["first", "second"]


def _without_timestamp(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(line.pop("timestamp")))
    return lines


@pytest.mark.parametrize("secrets", [[], ["hunter2-key"]])
def test_job_lines_rendered_in_one_step_equal_structlog_s_own(
    capsys: pytest.CaptureFixture[str], secrets: list[str]
) -> None:
    old = structlog.get_config()
    try:
        configure_logging("info", "json", secrets=secrets)
        with structlog.contextvars.bound_contextvars(request_id="r-1"):
            slow = structlog.get_logger("t").bind()
            with job_lines(structlog.get_logger("t")) as fast:
                assert not isinstance(fast, structlog.typing.BindableLogger)  # the one-step path was taken
                for logger in (slow, fast):
                    logger.info("job.succeeded", job_id="j-1", attempt=2, duration_ms=0, url="http://u:hunter2-key@h/")
                    logger.warning("job.failed", job_id="j-2", error="boom", retry_at=None)
                    logger.error("job.failed_permanently", job_id="j-3", error="RuntimeError: x")
                    logger.debug("not.shown")
    finally:
        structlog.configure(**old)
    lines = _without_timestamp(capsys.readouterr().out)
    assert len(lines) == 6
    assert lines[:3] == lines[3:]
    assert list(lines[0]) == list(lines[3])  # the same key order too
    assert lines[0]["request_id"] == "r-1" and lines[1]["level"] == "warning" and lines[2]["level"] == "error"
    assert ("hunter2-key" in lines[0]["url"]) is not bool(secrets)


@pytest.mark.parametrize(
    ("secrets", "context", "worker_id"),
    [
        ([], {}, "w-1"),
        ([], {"request_id": "r-1", "n": 3}, "w-1"),
        (["hunter2-key"], {"request_id": "r hunter2-key"}, "w-1"),
        (["hunter2-key"], {}, "w-hunter2-key"),  # a secret in a repeated field
        (["deadbeef"], {}, "w-1"),  # a secret that could be spelled in a job id: the general path
        ([], {"worker_id": "from-context", "level": "x"}, "w-\"quoted\"\n"),  # context keys named like the line's
    ],
)
def test_job_event_lines_equal_the_general_path_s(
    capsys: pytest.CaptureFixture[str], secrets: list[str], context: dict[str, object], worker_id: str
) -> None:
    job_id = uuid.UUID("deadbeef-0000-4000-8000-000000000001")
    old = structlog.get_config()
    try:
        configure_logging("info", "json", secrets=secrets)
        with structlog.contextvars.bound_contextvars(**context), job_lines(structlog.get_logger("t")) as batch:
            for duration_ms in (None, 7):
                job_event(batch, "info", "job.succeeded", job_id, "noop", 2, worker_id, duration_ms)
                fields: dict[str, object] = {"job_id": str(job_id), "task_type": "noop", "attempt": 2}
                if duration_ms is not None:
                    fields["duration_ms"] = duration_ms
                batch.info("job.succeeded", **fields, worker_id=worker_id)
            job_event(batch, "debug", "job.claimed", job_id, "noop", 2, worker_id)  # below the level: nothing
    finally:
        structlog.configure(**old)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0] == lines[1] and lines[2] == lines[3]  # the same text, byte for byte
    assert ("hunter2-key" in lines[0] + lines[2]) is False
    assert json.loads(lines[2])["duration_ms"] == 7 and "duration_ms" not in json.loads(lines[0])


def test_job_event_goes_through_structlog_when_logs_are_captured() -> None:
    with capture_logs() as captured, job_lines(structlog.get_logger("t")) as lines:
        job_event(lines, "info", "job.succeeded", uuid.UUID(int=1), "noop", 1, "w-1", 5)
    assert captured == [{
        "event": "job.succeeded", "job_id": str(uuid.UUID(int=1)), "task_type": "noop", "attempt": 1,
        "duration_ms": 5, "worker_id": "w-1", "log_level": "info",
    }]


def test_job_lines_respect_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    old = structlog.get_config()
    try:
        configure_logging("warning", "json")
        with job_lines(structlog.get_logger("t")) as fast:
            fast.info("job.succeeded", job_id="j-1")
            fast.warning("job.failed", job_id="j-2")
    finally:
        structlog.configure(**old)
    assert [line["event"] for line in _without_timestamp(capsys.readouterr().out)] == ["job.failed"]


@pytest.mark.usefixtures("json_logging")
def test_a_batch_of_job_lines_is_written_together_when_it_ends(capsys: pytest.CaptureFixture[str]) -> None:
    with job_lines(structlog.get_logger("t")) as batch:
        batch.info("job.claimed", job_id="j-1")
        batch.info("job.claimed", job_id="j-2")
        assert capsys.readouterr().out == ""  # nothing written while the batch is rendered
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["job_id"] for line in lines] == ["j-1", "j-2"]
    assert lines[0]["timestamp"] == lines[1]["timestamp"]  # one moment's lines: the clock is read once


@pytest.mark.usefixtures("json_logging")
def test_job_lines_go_through_structlog_when_logs_are_captured() -> None:
    with capture_logs() as captured, job_lines(structlog.get_logger("t")) as lines:
        lines.info("job.claimed", job_id="j-1")
    assert captured == [{"event": "job.claimed", "job_id": "j-1", "log_level": "info"}]


@pytest.mark.usefixtures("json_logging")
async def test_lines_logged_from_threads_and_the_loop_at_once_all_arrive_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def from_a_thread(n: int) -> None:
        for i in range(300):
            structlog.get_logger("t").info("thread.line", n=n, i=i)

    threads = [threading.Thread(target=from_a_thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for i in range(300):
        structlog.get_logger("t").info("loop.line", i=i)
        if i % 10 == 0:
            await asyncio.sleep(0)
    for t in threads:
        t.join()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((d["event"], d.get("n", -1), d["i"]) for d in lines) == sorted(
        [("loop.line", -1, i) for i in range(300)] + [("thread.line", n, i) for n in range(4) for i in range(300)]
    )

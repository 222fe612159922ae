"""The JSON log lines: their fields, and how they reach stdout (buffered within one event-loop iteration)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import structlog

from worker.observability import configure_logging


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

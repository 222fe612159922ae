"""Hostile CLI arguments (hypothesis), run in-process through worker.cli.main([...]): every input ends with exit
0, or 1/2 and a one-line `worker: error: ...` on stderr, never a traceback; a refused command changes no row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile_support import fingerprint, json_objects, json_values, module_database, printable
from worker.cli import main

__all__ = ["module_database"]

HYPO = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

text = st.one_of(printable, st.text(max_size=20), st.sampled_from(["", "-", "--", "-1", "0", "1e9", "noop", "*",
                                                                     "00000000-0000-0000-0000-000000000000"]))
options = st.lists(st.tuples(st.sampled_from(["--payload", "--priority", "--max-attempts", "--dedupe-key",
                                              "--run-at", "--status", "--limit", "--since", "--task-type",
                                              "--after", "--reason", "--by", "--json"]), text), max_size=3)


@st.composite
def argv(draw: Any) -> list[str]:
    command = draw(st.sampled_from([
        ["enqueue"], ["jobs", "list"], ["jobs", "show"], ["jobs", "retry"], ["jobs", "cancel"],
        ["jobs", "archive"], ["pause"], ["resume"], ["schedules"], ["cleanup", "--dry-run"], [],
    ]))
    args = list(command)
    args += draw(st.lists(text, max_size=2))
    for flag, value in draw(options):
        args += [flag] if flag == "--json" else [flag, value]
    return args


@HYPO
@given(args=argv())
def test_every_command_line_exits_cleanly_with_a_one_line_error(
    module_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", module_database)
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")
    before = fingerprint(module_database)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse: bad usage (2) or --help (0)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (code, args, err)
    assert "Traceback" not in out + err, (args, err)
    if code != 0:
        lines = [line for line in err.split("\n") if line.strip()]
        assert lines and lines[-1].startswith("worker: error:"), (args, err)
        assert len(lines) == 1 or lines[0].startswith("usage:"), (args, err)
        assert fingerprint(module_database) == before, f"refused {args} but rows changed"


@HYPO
@given(
    task_type=st.sampled_from(["noop", "cleanup", "game_platform_sync", "nope", "NOOP"]),
    payload=st.one_of(json_objects.map(json.dumps), json_values.map(json.dumps), text),
    extra=options,
)
def test_enqueue_with_any_payload_enqueues_or_refuses_with_one_line(
    module_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    task_type: str, payload: str, extra: list[tuple[str, str]],
) -> None:
    args = ["enqueue", task_type, "--payload", payload]
    for flag, value in extra:
        args += [flag] if flag == "--json" else [flag, value]
    test_every_command_line_exits_cleanly_with_a_one_line_error.hypothesis.inner_test(  # type: ignore[attr-defined]
        module_database, monkeypatch, capsys, args
    )


def test_a_payload_key_with_a_line_break_is_refused_on_one_line(
    module_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", module_database)
    before = fingerprint(module_database)
    assert main(["enqueue", "noop", "--payload", '{"a\\nb": 1}']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("worker: error: invalid payload for noop: 'a\\nb'"), err
    assert fingerprint(module_database) == before

"""Hostile CLI arguments (hypothesis), run in-process through worker.cli.main.main([...]): every input ends with exit
0, or 1/2 and a one-line `worker: error: ...` on stderr, never a traceback; a refused command changes no row."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from asyncpg.connect_utils import _parse_connect_dsn_and_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import fingerprint, json_objects, json_values, printable
from worker.cli.main import main
from worker.errors import ConfigError
from worker.settings import load_settings

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


def _exits_cleanly(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """`worker <args>` ends with exit 0, 1 or 2, never a traceback; a refusal is one line and changes no row."""
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")
    before = fingerprint(url)
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
        assert fingerprint(url) == before, f"refused {args} but rows changed"


@HYPO
@given(args=argv())
def test_every_command_line_exits_cleanly_with_a_one_line_error(
    module_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    _exits_cleanly(module_database, monkeypatch, capsys, args)


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
    _exits_cleanly(module_database, monkeypatch, capsys, args)


def test_a_payload_key_with_a_line_break_is_refused_on_one_line(
    module_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", module_database)
    before = fingerprint(module_database)
    assert main(["enqueue", "noop", "--payload", '{"a\\nb": 1}']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("worker: error: invalid payload for noop: 'a\\nb'"), err
    assert fingerprint(module_database) == before


# Database passwords: runs of a marker alphabet (so that a fragment is recognisable in any output) around the
# characters that end a URL's user part early when written unencoded, and their encoded forms.
PASSWORD_MARK = re.compile(r"[QZXJ79]{3,}")
passwords = st.lists(
    st.one_of(st.text(alphabet="QZXJ79", min_size=3, max_size=6),
              st.sampled_from([*"/#?@:[]%,&= ", "%2F", "%40", "%23", "%3F", "%ZZ", "%"])),
    min_size=1, max_size=6,
).map("".join)


def _password_url(password: str, database: str) -> str:
    name = urlsplit(database).path
    return f"postgresql://postgres:{password}@127.0.0.1:{urlsplit(database).port}{name}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=passwords, setting=st.sampled_from(["DATABASE_URL", "WORKER_LISTEN_DATABASE_URL"]))
def test_a_database_url_with_any_password_runs_or_is_refused_on_one_line_without_the_password(
    module_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], password: str,
    setting: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", module_database)
    monkeypatch.delenv("WORKER_LISTEN_DATABASE_URL", raising=False)  # one example's setting is not the next's
    monkeypatch.setenv(setting, _password_url(password, module_database))
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")
    capsys.readouterr()
    code = main(["doctor"] if setting != "DATABASE_URL" else ["migrate", "--status"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (password, err)
    assert code in (0, 1, 2), (code, password, err)
    if code == 2:
        lines = [line for line in err.split("\n") if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"worker: error: invalid setting: {setting}: "), err
    assert not [m for m in PASSWORD_MARK.findall(password) if m in out + err], (password, out + err)


@settings(max_examples=300, deadline=None)
@given(password=passwords, port=st.one_of(st.integers(1, 65535).map(str), st.sampled_from(["", "0", "x", "99999"])),
       database=st.sampled_from(["", "/", "/app", "/a%2Fb"]))
def test_every_database_url_the_settings_accept_is_parsed_by_asyncpg_as_written(
    password: str, port: str, database: str
) -> None:
    """The settings' check against the driver's own parser: an accepted URL reaches the host and port written
    after the '@' with the whole password; one the driver would choke on or misread is refused up front."""
    url = f"postgresql://postgres:{password}@db.example:{port}{database}" if port else \
        f"postgresql://postgres:{password}@db.example{database}"
    try:
        load_settings(_env_file=None, database_url=url)
    except ConfigError as exc:
        assert not [m for m in PASSWORD_MARK.findall(password) if m in str(exc)], (url, str(exc))
        return
    addrs, params = _parse_connect_dsn_and_args(
        dsn=url, host=None, port=None, user=None, password=None, passfile=None, database=None, ssl=None,
        service=None, servicefile=None, direct_tls=None, server_settings=None, target_session_attrs=None,
        krbsrvname=None, gsslib=None,
    )
    assert addrs == [("db.example", int(port or 5432))], url
    assert (params.password or "") == unquote(password), url
    assert params.database == unquote(database[1:]) or (not database[1:] and params.database == "postgres"), url

"""Hostile input on the HTTP port (property-based, hypothesis): bodies, query strings and headers of /trigger,
/api/jobs/run and /admin/api, including JSON beyond the port's bounds (nested thousands deep, integers of
thousands of digits, NaN, lone surrogates) and query integers in Unicode digits. Every input gets a clear answer
(2xx, or a 4xx with a JSON error), never a 500 or a traceback, and a rejected input changes no row. One
`worker run` process serves the whole module; everything is paused ('*') so nothing runs behind the test's back
and row fingerprints are stable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.hostile import (
    fingerprint,
    hostile_json,
    job_states,
    json_objects,
    json_values,
    odd_integers,
    printable,
)
from tests.support.procs import WorkerProcess, worker_env
from tests.support.rows import execute

pytestmark = pytest.mark.slow

SECRET = "hostile-runner-secret-1d2e"
ADMIN = "hostile-admin-token-77ab"
header = printable.map(str.strip)  # what HTTP lets a client send: no surrounding blanks
HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server(module_database: str) -> Iterator[tuple[httpx.Client, str]]:
    execute(module_database, "INSERT INTO job_queue_pause (task_type) VALUES ('*')")
    proc = WorkerProcess(worker_env(
        module_database, WORKER_HTTP_ENABLED="true", WORKER_HTTP_HOST="127.0.0.1", WORKER_HTTP_PORT="0",
        JOB_QUEUE_RUNNER_SECRET=SECRET, WORKER_ADMIN_TOKEN=ADMIN, WORKER_RUN_BUDGET_S="2",
    ), name="hostile")
    try:
        import anyio

        port = anyio.run(proc.http_port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client, module_database
        assert not proc.named("http.internal_error") and not proc.named("admin.internal_error"), proc.output
        assert "Traceback" not in proc.output, proc.output[-4000:]
    finally:
        proc.cleanup()


def _check(response: httpx.Response, before: str, url: str, accepted: set[int]) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code in accepted:
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in response.text
    assert fingerprint(url) == before, f"a rejected request changed rows: {response.status_code} {response.text}"


def _raw(value: Any) -> bytes:
    return json.dumps(value).encode()


# Bodies that embed a hostile JSON fragment where each endpoint would otherwise take a value.
hostile_bodies = st.one_of(
    hostile_json,
    st.builds(lambda key, value: f'{{"{key}": {value}}}', st.sampled_from(["limit", "ids", "filter", "reason", "x"]),
              hostile_json),
    st.builds(lambda value: f'{{"task_type": "noop", "payload": {{"fail": {value}}}}}', hostile_json),
    st.builds(lambda value: f'{{"ids": [{value}], "filter": {{"status": {value}}}}}', hostile_json),
).map(str.encode)
query_integers = st.one_of(st.none(), printable, odd_integers)
ONE_JOB = "/admin/api/jobs/00000000-0000-0000-0000-000000000000"
BODY_ENDPOINTS = [
    ("/trigger", SECRET), ("/api/jobs/run", SECRET), ("/admin/api/pause", ADMIN), ("/admin/api/resume", ADMIN),
    *((f"/admin/api/jobs/{action}", ADMIN) for action in ("retry", "cancel", "archive")),
    *((f"{ONE_JOB}/{action}", ADMIN) for action in ("retry", "cancel", "archive", "run-now")),
]

bodies = st.one_of(
    hostile_bodies,
    json_objects.map(_raw),
    json_values.map(_raw),
    st.binary(max_size=200),
    st.builds(lambda t, p: _raw({"task_type": t, "payload": p}),
              st.sampled_from(["noop", "cleanup", "game_platform_sync"]), json_values),
    st.just(b'{"task_type": "noop", "payload": {"fail": "' + b"x" * 70000 + b'"}}'),
    st.just(b'{"task_type": "noop", "payload": {"s": "\\u0000"}}'),
    st.just(b'{"task_type": "noop", "payload": {"fail": "nul \\u0000 inside"}}'),
)


@HYPO
@given(body=bodies)
def test_trigger_answers_every_body_with_a_clear_status_and_rejections_change_nothing(
    server: tuple[httpx.Client, str], body: bytes
) -> None:
    client, url = server
    before = fingerprint(url)
    r = client.post("/trigger", content=body, headers={"Authorization": f"Bearer {SECRET}",
                                                        "Content-Type": "application/json"})
    _check(r, before, url, accepted={202})


@HYPO
@given(body=hostile_bodies, endpoint=st.sampled_from(BODY_ENDPOINTS))
def test_json_beyond_the_bounds_gets_a_4xx_on_every_body_endpoint_and_changes_nothing(
    server: tuple[httpx.Client, str], body: bytes, endpoint: tuple[str, str]
) -> None:
    client, url = server
    path, token = endpoint
    before = fingerprint(url)
    r = client.post(path, content=body, headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"})
    _check(r, before, url, accepted=set())


@HYPO
@given(body=bodies, limit=query_integers)
def test_jobs_run_answers_every_body_and_query_with_a_clear_status(
    server: tuple[httpx.Client, str], body: bytes, limit: str | None
) -> None:
    client, url = server
    before = fingerprint(url)
    params = {} if limit is None else {"limit": limit}
    r = client.post("/api/jobs/run", content=body, params=params, headers={"Authorization": f"Bearer {SECRET}"})
    _check(r, before, url, accepted={200})


@HYPO
@given(
    authorization=st.one_of(st.none(), header, header.map(lambda s: f"Bearer {s}".strip()),
                            st.just(f"Bearer {SECRET}x"), st.just(f"Basic {SECRET}"), st.just(f"Bearer {ADMIN}")),
    content_type=st.one_of(st.none(), header),
    path=st.sampled_from(["/trigger", "/api/jobs/run", "/admin/api/jobs/retry", "/admin/api/pause"]),
)
def test_bad_credentials_are_refused_with_401_and_change_nothing(
    server: tuple[httpx.Client, str], authorization: str | None, content_type: str | None, path: str
) -> None:
    client, url = server
    assume(not (path.startswith("/admin") and authorization == f"Bearer {ADMIN}"))
    headers = {k: v for k, v in {"Authorization": authorization, "Content-Type": content_type}.items() if v}
    before = fingerprint(url)
    r = client.post(path, content=b'{"task_type": "noop"}', headers=headers)
    assert r.status_code == 401, (r.status_code, r.text)
    _check(r, before, url, accepted=set())


@HYPO
@given(
    query=st.dictionaries(st.sampled_from(["status", "task_type", "after", "before", "q", "cursor", "x", "since",
                                           "until"]),
                          st.one_of(printable, odd_integers), max_size=4),
    limit=query_integers,
    job_id=st.one_of(st.uuids().map(str), printable.filter(lambda s: s and "/" not in s and "?" not in s
                                                           and "#" not in s and "%" not in s)),
)
def test_admin_api_queries_and_ids_get_a_clear_answer(
    server: tuple[httpx.Client, str], query: dict[str, str], limit: str | None, job_id: str
) -> None:
    client, url = server
    auth = {"Authorization": f"Bearer {ADMIN}"}
    if limit is not None:
        query = {**query, "limit": limit}
    before = fingerprint(url)
    _check(client.get("/admin/api/jobs", params=query, headers=auth), before, url, accepted={200})
    _check(client.get(f"/admin/api/jobs/{job_id}", headers=auth), before, url, accepted={200})
    _check(client.post(f"/admin/api/jobs/{job_id}/retry", headers=auth), before, url, accepted=set())


@HYPO
@given(body=bodies, action=st.sampled_from(["retry", "cancel", "archive"]))
def test_admin_api_bulk_actions_reject_hostile_bodies_without_changing_anything(
    server: tuple[httpx.Client, str], body: bytes, action: str
) -> None:
    client, url = server
    before, rows_before = fingerprint(url), job_states(url)
    r = client.post(f"/admin/api/jobs/{action}", content=body, headers={"Authorization": f"Bearer {ADMIN}"})
    # A well-formed bulk request may answer 200: then it changed exactly the jobs it reports, and nothing at all
    # when it reports none.
    _check(r, before, url, accepted=set() if r.status_code != 200 else {200})
    if r.status_code == 200:
        answer = r.json()
        rows_after = job_states(url)
        changed = {i for i, row in rows_before.items() if rows_after.get(i) != row}
        named = {str(i) for i in answer[{"retry": "retried", "cancel": "cancelled", "archive": "archived"}[action]]}
        assert len(changed) == answer["count"] and changed <= named, (answer, changed)
        if action == "archive":
            assert all(i not in rows_after for i in changed), "archived jobs leave job_queue"
        if answer["count"] == 0:
            assert fingerprint(url) == before, f"a bulk {action} that acted on nothing changed rows"

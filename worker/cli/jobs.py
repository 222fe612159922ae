"""`worker enqueue` and `worker jobs ...`: enqueue, list, show, retry (by id or in bulk), cancel, run-now,
archive. Every argument is checked before the database is touched; a rejected command changes nothing."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio

from worker import db, progress, queue
from worker import operations as operator  # the body predates the rename
from worker.cli import tasks as cli_tasks
from worker.cli.output import print_json, print_kv, print_table
from worker.discovery import load_task_configs
from worker.errors import DatabaseUnavailable, InvalidInput, JobStateConflict, WorkerError
from worker.runtime.jobrun import run_claimed
from worker.settings import Settings

__all__ = ["add_parsers", "parse_ids", "parse_payload"]

Args = argparse.Namespace


def parse_payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--payload is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise InvalidInput("--payload must be a JSON object, e.g. '{\"key\": 1}'")
    return value


def parse_ids(values: list[str]) -> list[uuid.UUID]:
    return list(dict.fromkeys(queue.parse_job_id(v) for v in values))


def _parse_run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.now(UTC) + operator.parse_duration(text)
    except InvalidInput:
        pass
    return operator.parse_moment(text, example="10m or 2030-01-01T00:00Z", what="--run-at")


def _conn(settings: Settings) -> Any:
    return db.connection(settings.dsn, connect_timeout_s=settings.db_connect_timeout_s, app="worker-cli")


# --- enqueue --------------------------------------------------------------------------------------
async def cmd_enqueue(settings: Settings, args: Args) -> int:
    registry = cli_tasks.registry(settings)
    payload = parse_payload(args.payload)
    registry.validate(args.task_type, payload)
    task = registry.get(args.task_type)
    job = queue.NewJob(
        args.task_type, payload, run_at=_parse_run_at(args.run_at),
        priority=task.priority if args.priority is None else args.priority,
        max_attempts=args.max_attempts or task.max_attempts or settings.default_max_attempts,
        dedupe_key=args.dedupe_key,
    ).checked()
    async with _conn(settings) as conn:
        enq = await queue.enqueue(conn, job)
    if args.json:
        print_json({"id": enq.id, "created": enq.created})
    else:
        print(f"{'enqueued' if enq.created else 'already queued (same dedupe key)'} {enq.id}")
    return 0


# --- list / show ----------------------------------------------------------------------------------
LIST_COLUMNS = ["id", "task_type", "status", "attempts", "progress", "priority", "run_at", "created_at", "last_error"]


async def cmd_list(settings: Settings, args: Args) -> int:
    since = operator.parse_since(args.since) if args.since else None
    after = queue.parse_job_id(args.after) if args.after else None
    async with _conn(settings) as conn:
        rows = await operator.list_jobs(
            conn, status=args.status, task_type=args.task_type, since=since, limit=args.limit, after=after
        )
        await progress.attach_progress(conn, rows)
    next_after = rows[-1]["id"] if len(rows) == args.limit else None
    if args.json:
        print_json({"jobs": rows, "next_after": next_after})
    else:
        print_table([{**r, "progress": progress.render(r["progress"])} for r in rows], LIST_COLUMNS, max_width=50)
        if next_after:
            print(f"more: worker jobs list --after {next_after} ...")
    return 0


SHOW_KEYS = ["id", "task_type", "status", "progress", "priority", "attempts", "max_attempts", "run_at", "dedupe_key",
             "locked_by", "locked_until", "created_at", "started_at", "finished_at", "last_error"]


async def cmd_show(settings: Settings, args: Args) -> int:
    job_id = queue.parse_job_id(args.id)
    async with _conn(settings) as conn:
        job = await operator.show_job(conn, job_id)
        await progress.attach_progress(conn, [job])
    if args.json:
        print_json(job)
        return 0
    print_kv({**job, "progress": progress.render(job["progress"])}, SHOW_KEYS)
    print(f"payload\n  {json.dumps(job['payload'], indent=2).replace(chr(10), chr(10) + '  ')}")
    print(f"result\n  {json.dumps(job['result'], indent=2).replace(chr(10), chr(10) + '  ')}")
    print("attempts")
    print_table(job["runs"], ["attempt", "outcome", "worker_id", "started_at", "duration_ms", "error"],
                max_width=200)
    return 0


# --- retry / cancel -------------------------------------------------------------------------------
async def cmd_retry(settings: Settings, args: Args) -> int:
    bulk = args.status is not None or args.task_type is not None or args.since is not None
    if args.ids and bulk:
        raise InvalidInput("give job ids or a filter (--status/--task-type/--since), not both")
    if not args.ids and args.status is None:
        raise InvalidInput("give job ids, or --status failed|cancelled for a bulk replay")
    if args.ids:
        ids = parse_ids(args.ids)
        async with _conn(settings) as conn:
            done = await queue.retry_now(conn, ids)
    else:
        since = operator.parse_since(args.since) if args.since else None
        async with _conn(settings) as conn:
            done = await operator.retry_filtered(
                conn, status=args.status, task_type=args.task_type, since=since, limit=args.limit
            )
    if args.json:
        print_json({"retried": done})
    else:
        print(f"retried {len(done)} job(s)")
        for job_id in done:
            print(f"  {job_id}")
    return 0


async def cmd_cancel(settings: Settings, args: Args) -> int:
    ids = parse_ids(args.ids)
    async with _conn(settings) as conn:
        done = await queue.cancel(conn, ids, args.reason)
    if args.json:
        print_json({"cancelled": done})
    else:
        print(f"cancelled {len(done)} job(s)")
    return 0


# --- run-now --------------------------------------------------------------------------------------
async def cmd_run_now(settings: Settings, args: Args) -> int:
    """Claim this pending job (paused or not, due or not) and run it here, in this process, through the runner
    /api/jobs/run uses: leases renewed, the job stopped when its lease cannot be kept (tests/test_run_now_faults.py)."""
    job_id = queue.parse_job_id(args.id)
    registry = cli_tasks.discovered(settings).every
    worker_id = f"cli:{settings.worker_id}"[:200]
    call_s = settings.db_call_timeout_s
    pool = await db.create_pool(settings.dsn, max_size=3, connect_timeout_s=settings.db_connect_timeout_s)
    try:
        async with db.bounded(pool, call_s) as conn:
            row = await queue.get_job(conn, job_id)
        if row["status"] != "pending":
            raise JobStateConflict(
                f"cannot run job {job_id} now: it is {row['status']} (only pending jobs; "
                "`worker jobs retry` a failed one first)"
            )
        registry.get(row["task_type"])
        sent = time.monotonic()
        async with db.bounded(pool, call_s) as conn:
            claimed = await queue.claim_ids(conn, [job_id], worker_id=worker_id, lease_s=settings.lease_s)
        if not claimed:
            raise JobStateConflict(f"cannot run job {job_id} now: another worker claimed it first")
        job = claimed[0]
        resources = {"pool": pool, "settings": settings, "task_configs": load_task_configs(registry)}
        ran = await run_claimed(pool, settings, registry, worker_id, [job], resources=resources, claimed_at=sent)
        if job.id in ran.lost:
            with contextlib.suppress(WorkerError):  # best effort: else its lease expires and recovery hands it back
                async with db.bounded(pool, min(call_s, settings.lease_s / 5)) as conn:
                    await queue.release(conn, worker_id, [(job.id, job.attempt, job.started_at)])
            raise DatabaseUnavailable(f"job {job_id} stopped: {ran.lost[job.id]}; not recorded, handed back")
        finished = ran.finished[job.id]
        async with db.bounded(pool, call_s) as conn:
            acked = await queue.finish(conn, worker_id, [finished])
    finally:
        with anyio.move_on_after(0.5):  # a connection that hangs (an outage) is not waited for
            await pool.close()
        pool.terminate()
    if job.id not in acked:
        raise JobStateConflict(f"job {job_id} ran but its lease was lost (cancelled meanwhile?); not recorded")
    out = {"id": job.id, "status": finished.status, "outcome": finished.outcome, "result": finished.result,
           "error": finished.error, "duration_ms": finished.duration_ms, "retry_at": finished.retry_at}
    if args.json:
        print_json(out)
    else:
        print(f"job {job.id}: {finished.outcome} in {finished.duration_ms} ms"
              + (f": {finished.error}" if finished.error else ""))
    return 0 if finished.status == "succeeded" else 1


# --- archive --------------------------------------------------------------------------------------
async def cmd_archive(settings: Settings, args: Args) -> int:
    if args.ids and args.older_than:
        raise InvalidInput("give job ids or --older-than, not both")
    if not args.ids and not args.older_than:
        raise InvalidInput("give job ids, or --older-than DURATION (e.g. 30d)")
    if args.ids:
        ids = parse_ids(args.ids)
        async with _conn(settings) as conn:
            jobs, runs = await operator.archive_ids(conn, ids)
    else:
        older = operator.parse_duration(args.older_than)
        async with _conn(settings) as conn:
            jobs, runs = await operator.archive_filtered(
                conn, older_than=older, status=args.status, task_type=args.task_type, limit=args.limit,
                batch_size=settings.cleanup_batch_size,
            )
    if args.json:
        print_json({"archived_jobs": jobs, "archived_runs": runs})
    else:
        print(f"archived {jobs} job(s) and {runs} attempt record(s)")
    return 0


# --- parsers --------------------------------------------------------------------------------------
def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("enqueue", parents=[common], help="enqueue one job")
    p.add_argument("task_type")
    p.add_argument("--payload", default="{}", help="a JSON object (default {})")
    p.add_argument("--run-at", help="when: an ISO time with zone, or a delay such as 10m")
    p.add_argument("--priority", type=int, default=None, help="-1000..1000, higher first (default: the task's)")
    p.add_argument("--max-attempts", type=int, default=None)
    p.add_argument("--dedupe-key", default=None, help="at most one pending/running job per key")
    p.set_defaults(handler=cmd_enqueue)

    jobs = sub.add_parser("jobs", help="list, show, retry, cancel, run or archive jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=type(jobs))
    p = jsub.add_parser("list", parents=[common], help="jobs, newest first")
    p.add_argument("--status", choices=operator.STATUSES)
    p.add_argument("--task-type")
    p.add_argument("--since", help="created since: a duration ago (1h) or an ISO time")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--after", help="continue after this job id (the previous page's last)")
    p.set_defaults(handler=cmd_list)
    p = jsub.add_parser("show", parents=[common], help="one job: payload, result, error, every attempt")
    p.add_argument("id")
    p.set_defaults(handler=cmd_show)
    p = jsub.add_parser("retry", parents=[common], help="run failed/cancelled jobs again: by id or in bulk")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--status", choices=("failed", "cancelled"), help="bulk: jobs in this status")
    p.add_argument("--task-type", help="bulk: only this task type")
    p.add_argument("--since", help="bulk: finished since (a duration ago or an ISO time)")
    p.add_argument("--limit", type=int, default=10000, help="bulk: at most this many")
    p.set_defaults(handler=cmd_retry)
    p = jsub.add_parser("cancel", parents=[common], help="cancel pending or running jobs")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--reason", default=None)
    p.set_defaults(handler=cmd_cancel)
    p = jsub.add_parser("run-now", parents=[common], help="run one pending job here, now (even when paused)")
    p.add_argument("id")
    p.set_defaults(handler=cmd_run_now)
    p = jsub.add_parser("archive", parents=[common], help="move finished jobs and their history to the archive")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--older-than", help="finished more than this long ago (e.g. 30d)")
    p.add_argument("--status", choices=operator.FINISHED)
    p.add_argument("--task-type")
    p.add_argument("--limit", type=int, default=100000)
    p.set_defaults(handler=cmd_archive)

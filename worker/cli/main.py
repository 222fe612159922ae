"""The `worker` command. Exit codes: 0 ok, 1 a failed operation or check, 2 bad usage or settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from worker import db
from worker.errors import (
    ConfigError,
    DatabaseUnavailable,
    InvalidInput,
    JobNotFound,
    JobStateConflict,
    WorkerError,
)
from worker.logs import configure_logging
from worker.migrate import migrate, schema_status
from worker.redaction import Redactor, install_stored
from worker.settings import Settings, load_settings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"worker: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="worker", description="A PostgreSQL job-queue daemon.")
    parser.add_argument("--version", action="version", version=f"worker {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    run.add_argument("--tasks", action="append", metavar="MODULE:ATTR",
                     help="also run these tasks (a Task, or a callable returning tasks; repeatable)")
    mig = sub.add_parser("migrate", help="apply pending schema migrations (safe to run twice or at once)")
    mig.add_argument("--status", action="store_true", help="only print the schema version")
    # Operator commands (each sets `handler`): enqueue, jobs ..., pause, resume, cleanup, schedules, doctor, workers,
    # tasks.
    from worker.cli import jobs as cli_jobs
    from worker.cli import nodes as cli_nodes
    from worker.cli import ops as cli_ops
    from worker.cli import tasks as cli_tasks

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    cli_jobs.add_parsers(sub, common)
    cli_ops.add_parsers(sub, common)
    cli_nodes.add_parsers(sub, common)
    cli_tasks.add_parsers(sub, common)
    # Other faces' commands; their modules (Starlette, uvicorn, httpx) are imported only when they run.
    _add_simulator_parser(sub)  # `worker simulate-platform`: needs no database or settings
    _add_demo_parser(sub)  # `worker demo`: makes its own database and settings
    return parser


def _version() -> str:
    """The installed distribution's version (tests/test_packaging.py: test_worker_version_prints_...)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("worker")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_simulator_parser(sub: Any) -> None:
    """Add `worker simulate-platform` to the CLI's subparsers."""
    p = sub.add_parser("simulate-platform", help="serve a simulated game platform API on loopback")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--players", type=int, default=1000)
    p.add_argument("--api-key", default=None, help="required key (default: any non-empty key)")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503 (0..1)")
    p.add_argument("--rate-limit-rps", type=float, default=None)
    p.add_argument("--rate-limit-burst", type=float, default=None)
    p.add_argument("--retry-after-s", type=int, default=1)
    p.add_argument("--access-log", action="store_true", help="log every request")


def _add_demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="show the whole system working: database, simulator, daemon, one sync")
    p.add_argument("--keep-running", action="store_true", help="leave everything up until Ctrl-C")
    p.add_argument("--coaches", type=int, default=3, help="coaches to seed (default 3)")
    p.add_argument("--competitors", type=int, default=4, help="competitors per coach (default 4)")
    p.add_argument("--http-port", type=int, default=0, help="the daemon's HTTP port (default: a free one)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the sync (default 60)")
    p.add_argument("--verbose", action="store_true", help="show the daemon's logs too")


def _one_line(message: str) -> str:
    """Arguments are echoed in errors: escape line breaks and other control characters they may carry."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def _fail(message: str, code: int) -> int:
    print(f"worker: error: {_one_line(message)}", file=sys.stderr)
    return code


async def _migrate(settings: Settings, status_only: bool) -> int:
    async with db.connection(settings.dsn, connect_timeout_s=settings.db_connect_timeout_s) as conn:
        if status_only:
            st = await schema_status(conn)
            print(f"schema version {st.current} of {st.latest}" + ("" if st.up_to_date else " (behind)"))
            return 0 if st.up_to_date else 1
        applied = await migrate(conn)
    print(f"applied migrations: {', '.join(f'{v:03d}' for v in applied)}" if applied else "schema is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate-platform":
        from worker.game_platform import simulator

        return simulator.run_cli(args)
    if args.command == "demo":
        from worker.cli import demo

        return demo.run_cli(args)
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc), 2)
    handler = getattr(args, "handler", None)
    secrets = settings.secret_values()
    from worker.cli import tasks as cli_tasks

    cli_tasks.forget()  # one discovery per command (main runs many times in one process in the tests)
    if args.command in cli_tasks.NEEDS_TASKS:  # tasks are found (and checked) before anything connects
        try:
            secrets += cli_tasks.secrets(cli_tasks.load(settings, args))
        except ConfigError as exc:
            return _fail(str(exc), 2)
    # Operator commands keep stdout for their output: only warnings and errors are logged.
    level = settings.log_level if handler is None or settings.log_level == "error" else "warning"
    configure_logging(level, settings.log_format, secrets=secrets)
    install_stored(secrets)  # what jobs store is redacted as the logs are
    redactor = Redactor(secrets)
    try:
        return _dispatch(args, settings, handler)
    except ConfigError as exc:  # a bad setting found at start-up (a task's policy or limit): nothing ran
        return _fail(redactor.redact_text(str(exc)), 2)
    except DatabaseUnavailable as exc:  # the driver's text may carry a URL: no secret leaves in an error
        return _fail(redactor.redact_text(str(exc)), 1)
    except (JobNotFound, JobStateConflict) as exc:
        return _fail(redactor.redact_text(str(exc)), 1)
    except InvalidInput as exc:  # malformed argument: bad id, JSON, duration, unknown task type
        return _fail(redactor.redact_text(str(exc)), 2)
    except WorkerError as exc:
        return _fail(redactor.redact_text(str(exc)), 1)
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings, handler: Any) -> int:
    if handler is not None:
        code: int = anyio.run(handler, settings, args)
        return code
    if args.command == "migrate":
        return anyio.run(_migrate, settings, args.status)
    if args.command == "run":
        from worker.cli import tasks as cli_tasks
        from worker.service import serve

        registry = cli_tasks.load(settings, args).enabled
        return anyio.run(lambda: serve(settings, registry, migrate_first=args.migrate))
    return _fail(f"unknown command {args.command}", 2)


if __name__ == "__main__":
    sys.exit(main())

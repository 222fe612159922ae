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
from worker.migrate import migrate, schema_status
from worker.observability import configure_logging
from worker.redaction import Redactor
from worker.settings import Settings, load_settings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"worker: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="worker", description="A PostgreSQL job-queue daemon.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    mig = sub.add_parser("migrate", help="apply pending schema migrations (safe to run twice or at once)")
    mig.add_argument("--status", action="store_true", help="only print the schema version")
    # Operator commands (each sets `handler`): enqueue, jobs ..., pause, resume, cleanup, schedules, doctor.
    from worker import cli_jobs, cli_ops

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    cli_jobs.add_parsers(sub, common)
    cli_ops.add_parsers(sub, common)
    # Other faces' commands:
    from worker.game_platform import simulator

    simulator.add_cli_parser(sub)  # `worker simulate-platform`: needs no database or settings
    from worker import demo

    demo.add_cli_parser(sub)  # `worker demo`: makes its own database and settings
    return parser


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
        from worker import demo

        return demo.run_cli(args)
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc), 2)
    handler = getattr(args, "handler", None)
    # Operator commands keep stdout for their output: only warnings and errors are logged.
    level = settings.log_level if handler is None or settings.log_level == "error" else "warning"
    configure_logging(level, settings.log_format, secrets=settings.secret_values())
    redactor = Redactor(settings.secret_values())
    try:
        return _dispatch(args, settings, handler)
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
        from worker.service import serve

        return anyio.run(lambda: serve(settings, migrate_first=args.migrate))
    return _fail(f"unknown command {args.command}", 2)


if __name__ == "__main__":
    sys.exit(main())

"""Throwaway clusters for the demo: the system's binaries, or the packaged build of the `demo` extra."""

from __future__ import annotations

import shutil

import pytest

from tests.support.daemon import make_settings, running_daemon, wait_for
from worker import db, queue
from worker.builtin import default_registry
from worker.cli import pgcluster
from worker.migrate import migrate


def test_without_system_binaries_the_packaged_build_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = pgcluster.packaged_bindir()
    assert packaged is not None, "the `demo` extra (pgserver) is part of the test install"
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(pgcluster, "_BINDIR_GLOBS", ())
    assert pgcluster.find_bindir() == packaged


def test_without_any_binaries_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(pgcluster, "_BINDIR_GLOBS", ())
    monkeypatch.setattr(pgcluster, "packaged_bindir", lambda: None)
    with pytest.raises(pgcluster.ClusterError, match=r"worker\[demo\]"), pgcluster.throwaway_cluster():
        pass


@pytest.mark.timeout(120)
async def test_a_cluster_from_the_packaged_build_runs_the_queue() -> None:
    bindir = pgcluster.packaged_bindir()
    assert bindir is not None
    with pgcluster.throwaway_cluster(bindir=bindir) as cluster:
        url = cluster.url()
        async with db.connection(url) as conn:
            await migrate(conn)
            res = await queue.enqueue(conn, queue.NewJob("noop"))
            async with running_daemon(make_settings(url), default_registry()):

                async def done() -> bool:
                    return (await queue.get_job(conn, res.id))["status"] == "succeeded"

                await wait_for(done, timeout_s=20)
    assert not cluster.root.exists()

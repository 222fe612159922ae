"""The soak bench's reading of issue 25's targets (bench/soak_verdict.py), on made-up reports: each target met by
a steady run and missed by the one fault it is about."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.soak_verdict import Report, verdict

OFFERED = 1000.0


def steady(minutes: float = 10.0) -> list[Report]:
    """Reports every 30 s: on the offered rate, nothing waiting, the size flat, a cleanup started each minute."""
    return [
        Report(t, OFFERED, 0.1, 500.0, 0, 0, 0.1 if n % 2 == 0 else None)
        for n, t in enumerate(30.0 * k + 1 for k in range(1, int(minutes * 2) + 1))
    ]


def line(lines: list[str], start: str) -> str:
    (found,) = [x for x in lines if x.startswith(start)]
    return found


def test_a_steady_run_meets_every_target() -> None:
    lines = verdict(steady(), OFFERED, 30.0)
    assert len(lines) == 5 and all(x.endswith(": met") for x in lines), lines


def test_the_first_minute_is_not_judged_for_throughput() -> None:
    reports = steady()
    reports[0] = replace(reports[0], done_per_s=100.0)  # t=31: a cold start
    reports[1] = replace(reports[1], done_per_s=100.0)  # t=61: still the first minute
    assert line(verdict(reports, OFFERED, 30.0), "throughput").endswith(": met")


@pytest.mark.parametrize("rate", [880.0, 1120.0])
def test_one_interval_more_than_a_tenth_off_the_offered_rate_is_not_met(rate: float) -> None:
    reports = steady()
    reports[6] = replace(reports[6], done_per_s=rate)
    assert line(verdict(reports, OFFERED, 30.0), "throughput").endswith("NOT MET")


def test_an_oldest_due_job_of_five_seconds_is_not_met() -> None:
    reports = steady()
    reports[9] = replace(reports[9], oldest_due_s=5.0)
    found = line(verdict(reports, OFFERED, 30.0), "oldest due job")
    assert "at most 5.0 s" in found and found.endswith("NOT MET")


def test_size_is_judged_from_three_minutes_in_against_its_largest_after() -> None:
    reports = [replace(r, total_mb=100.0 + r.t_s) if r.t_s < 180 else r for r in steady()]  # growth before 3 min
    assert line(verdict(reports, OFFERED, 30.0), "job_queue + job_runs").endswith(": met")
    grown = [replace(r, total_mb=560.0) if r.t_s > 400 else r for r in steady()]  # 12 % above 500 MB
    found = line(verdict(grown, OFFERED, 30.0), "job_queue + job_runs")
    assert "500 MB at 181 s, at most 560 MB after, 560 MB last" in found and found.endswith("NOT MET")


@pytest.mark.parametrize(("restarts", "lost"), [(1, 0), (0, 1)])
def test_a_restart_or_a_lost_lease_is_not_met(restarts: int, lost: int) -> None:
    reports = steady()
    reports[-1] = replace(reports[-1], restarts=restarts, lease_lost=lost)
    assert line(verdict(reports, OFFERED, 30.0), "daemon restarts").endswith("NOT MET")


def test_a_cleanup_a_minute_late_is_not_met() -> None:
    reports = steady()
    reports[8] = replace(reports[8], cleanup_delay_s=60.0)
    assert line(verdict(reports, OFFERED, 30.0), "cleanup").endswith("NOT MET")


def test_a_cleanup_that_never_started_for_over_two_minutes_is_a_missed_slot() -> None:
    one_late = steady()
    one_late[4] = replace(one_late[4], cleanup_delay_s=None)  # started in the next report instead: not a miss
    one_late[5] = replace(one_late[5], cleanup_delay_s=25.0)
    assert line(verdict(one_late, OFFERED, 30.0), "cleanup").endswith(": met")
    missed = steady()
    for n in range(4, 9):  # five reports (150 s) without a start
        missed[n] = replace(missed[n], cleanup_delay_s=None)
    found = line(verdict(missed, OFFERED, 30.0), "cleanup")
    assert "spans over two minutes without one started 1 " in found and found.endswith("NOT MET")


def test_a_run_too_short_to_judge_says_so_instead_of_met() -> None:
    lines = verdict(steady(minutes=1.0), OFFERED, 30.0)
    assert line(lines, "throughput") == "throughput after the first minute: no report after the first minute"
    assert line(lines, "job_queue + job_runs") == "job_queue + job_runs: no report at or after 180 s"

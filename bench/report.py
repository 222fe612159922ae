"""Summaries of raw measurements and the one comparison table."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["enqueue_table", "percentiles", "round_ratios", "summarize", "table", "targets"]

MIB = 1024 * 1024


def percentiles(values: list[float], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    if not values:
        return {}
    if len(values) == 1:
        return {f"p{p}": values[0] for p in points}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": cuts[p - 1] for p in points}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Median and range of the drain runs, latency percentiles (ms), idle cost, memory (MiB)."""
    out: dict[str, Any] = {"system": raw["system"], "error": raw.get("error")}
    drains = raw.get("drain") or []
    if drains:
        rates = [d["drain_per_s"] for d in drains]
        out["enqueue_per_s"] = statistics.median(d["enqueue_per_s"] for d in drains)
        out["drain_median"] = statistics.median(rates)
        out["drain_min"], out["drain_max"] = min(rates), max(rates)
        out["cpu_ms_per_1k"] = statistics.median(d["cpu_ms_per_1k"] for d in drains)
        out["succeeded_ok"] = all(d["succeeded"] == d["jobs"] for d in drains)
    idle = raw.get("idle") or {}
    if idle:
        out["latency_ms"] = {k: v * 1000 for k, v in percentiles(idle["latencies_s"]).items()}
        out["idle_tx_per_s"] = idle["idle_tx_per_s"]
        out["idle_cpu_s_per_min"] = idle["idle_cpu_s_per_min"]
        out["rss_idle_mib"] = idle["rss_idle"] / MIB
    peaks = [d["rss_peak"] for d in drains] + ([idle["rss_peak"]] if idle else [])
    if peaks:
        out["rss_peak_mib"] = max(peaks) / MIB
    return out


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


HEADERS = (
    "system", "enqueue/s", "drain jobs/s median [min-max]", "x worker", "latency p50/p95/p99 ms", "idle tx/s",
    "idle CPU s/min", "RSS idle/peak MiB", "CPU ms/1k jobs",
)


def table(summaries: list[dict[str, Any]]) -> str:
    base = next((s.get("drain_median") for s in summaries if s["system"] == "worker"), None)
    rows = [HEADERS]
    for s in summaries:
        if s.get("error"):
            rows.append((s["system"], "error: " + str(s["error"]).splitlines()[0][:80], *[""] * 7))
            continue
        med = s.get("drain_median")
        drain = "-" if med is None else f"{med:,.0f} [{s['drain_min']:,.0f}-{s['drain_max']:,.0f}]"
        if med is not None and not s.get("succeeded_ok", True):
            drain += " (!)"
        lat = s.get("latency_ms") or {}
        rows.append((
            s["system"],
            _f(s.get("enqueue_per_s"), ",.0f"),
            drain,
            "-" if med is None or not base else f"{med / base:.2f}",
            "/".join(_f(lat.get(p), ".2f") for p in ("p50", "p95", "p99")) if lat else "-",
            _f(s.get("idle_tx_per_s"), ".2f"),
            _f(s.get("idle_cpu_s_per_min"), ".3f"),
            f"{_f(s.get('rss_idle_mib'), '.0f')}/{_f(s.get('rss_peak_mib'), '.0f')}",
            _f(s.get("cpu_ms_per_1k"), ",.0f"),
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(HEADERS))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str, sub: str | None = None) -> float | None:
    if not a or not b:
        return None
    x, y = a.get(key), b.get(key)
    if sub is not None:
        x, y = (x or {}).get(sub), (y or {}).get(sub)
    return None if not x or not y else x / y


def round_ratios(raws: list[dict[str, Any]], a: str, b: str, key: str = "drain_per_s") -> list[float]:
    """`a`'s figure over `b`'s in each drain round (run i of both: the same minutes of this VM)."""
    by = {r["system"]: r.get("drain") or [] for r in raws}
    return [x[key] / y[key] for x, y in zip(by.get(a, []), by.get(b, []), strict=False) if y[key]]


def enqueue_table(enqueues: dict[str, list[dict[str, Any]]]) -> str:
    base = statistics.median(r["per_s"] for r in enqueues["plain_insert"]) if enqueues.get("plain_insert") else None
    lines = ["| enqueuer | jobs/s median [min-max] | x plain_insert |", "|---|---|---|"]
    for name, runs in enqueues.items():
        rates = [r["per_s"] for r in runs]
        if not rates:
            continue
        med = statistics.median(rates)
        ratio = f"{med / base:.2f}" if base else "-"
        lines.append(f"| {name} | {med:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] | {ratio} |")
    return "\n".join(lines)


def targets(
    summaries: list[dict[str, Any]], raws: list[dict[str, Any]] | None = None,
    enqueues: dict[str, list[dict[str, Any]]] | None = None,
) -> list[str]:
    """Issue 24's targets as measured ratios (reported, never asserted). The ceiling rows are the like-for-like
    ones (asynchronous claims, claim-ahead); the durable rows are shown beside them."""
    by = {s["system"]: s for s in summaries if not s.get("error")}
    w, c, w100, c100 = by.get("worker"), by.get("ceiling"), by.get("worker100"), by.get("ceiling100")
    checks = [
        ("drain worker / ceiling, medians (target >= 1.0)", _ratio(w, c, "drain_median")),
        ("drain worker100 / ceiling100, medians (target >= 0.85)", _ratio(w100, c100, "drain_median")),
        ("CPU per job worker100 / ceiling100 (target <= 1.5)", _ratio(w100, c100, "cpu_ms_per_1k")),
        ("CPU per job worker / ceiling", _ratio(w, c, "cpu_ms_per_1k")),
        ("latency p50 worker / ceiling (target <= 1.15)", _ratio(w, c, "latency_ms", "p50")),
        ("latency p99 worker / ceiling (target <= 1.3)", _ratio(w, c, "latency_ms", "p99")),
        ("drain worker / ceiling_durable", _ratio(w, by.get("ceiling_durable"), "drain_median")),
        ("drain worker100 / ceiling100_durable", _ratio(w100, by.get("ceiling100_durable"), "drain_median")),
        ("drain worker / pgqueuer", _ratio(w, by.get("pgqueuer"), "drain_median")),
        ("drain worker / pgqueuer_tuned", _ratio(w, by.get("pgqueuer_tuned"), "drain_median")),
    ]
    lines = [f"{label}: {value:.2f}" for label, value in checks if value is not None]
    for a, b, goal in (("worker", "ceiling", ">= 1.0"), ("worker100", "ceiling100", ">= 0.85")):
        per_round = round_ratios(raws or [], a, b)
        if per_round:
            lines.append(f"drain {a} / {b} per round (target: median {goal}): median "
                         f"{statistics.median(per_round):.2f}, rounds " + ", ".join(f"{r:.2f}" for r in per_round))
    if enqueues and enqueues.get("enqueue_many"):
        many = statistics.median(r["per_s"] for r in enqueues["enqueue_many"])
        for other, goal in (("plain_insert", ">= 0.8"), ("pgqueuer_batch", ">= 1")):
            if enqueues.get(other):
                ratio = many / statistics.median(r["per_s"] for r in enqueues[other])
                lines.append(f"enqueue_many / {other} (target {goal}): {ratio:.2f}")
    if w and w.get("rss_idle_mib") is not None:
        lines.append(f"worker RSS idle: {w['rss_idle_mib'] * MIB / 1e6:.0f} MB")
    return lines

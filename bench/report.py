"""The benchmark's output: plain-text tables (with ratios to the naive loop) and JSON."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

BASELINE = "naive-plain"


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def summarize(run: dict) -> dict:
    """One server at one N, reduced to the table's numbers. Latencies: the median over
    the broadcasts of each one's p50 and p99, the largest max, the fewest received."""
    casts = run.get("broadcasts", [])
    n = run["n"]
    received = min((b["received"] for b in casts), default=None)
    memory = run.get("memory", {})
    return {
        "server": run["server"],
        "n": n,
        "error": run.get("error"),
        "connect_s": run.get("connect", {}).get("connect_s"),
        "ready": run.get("connect", {}).get("ready"),
        "e2e_p50": _median([b["e2e"]["p50_ms"] for b in casts]),
        "e2e_p99": _median([b["e2e"]["p99_ms"] for b in casts]),
        "e2e_max": max((b["e2e"]["max_ms"] or 0 for b in casts), default=None) if casts else None,
        "fanout_p99": _median([b["fanout"]["p99_ms"] for b in casts]),
        "received": received,
        "rss_idle_mb": memory.get("rss_connected_kb", 0) / 1024 if memory else None,
        "kb_per_conn": memory.get("kb_per_conn_connected"),
        "kb_per_conn_after": memory.get("kb_per_conn_after_broadcasts"),
        "cpu_s": run.get("cpu", {}).get("total_s"),
    }


def _ratio(value, base) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def main_table(runs: list[dict]) -> str:
    """Every server at every N, with ratios to the naive loop with plain frames."""
    rows = [summarize(run) for run in runs]
    base = {row["n"]: row for row in rows if row["server"] == BASELINE and not row["error"]}
    header = ["server", "N", "connect s", "e2e p50", "e2e p99", "e2e max", "fan-out p99",
              "received", "RSS idle MB", "KB/conn idle", "KB/conn after", "CPU s",
              "p99 vs naive", "fan-out vs naive", "KB/conn vs naive"]
    lines = []
    for row in rows:
        b = base.get(row["n"], {})
        received = "-" if row["received"] is None else f"{row['received']}/{row['n']}"
        cells = [row["server"], f"{row['n']:,}", _fmt(row["connect_s"], 1), _fmt(row["e2e_p50"], 1),
                 _fmt(row["e2e_p99"], 1), _fmt(row["e2e_max"], 1), _fmt(row["fanout_p99"], 1), received,
                 _fmt(row["rss_idle_mb"], 0), _fmt(row["kb_per_conn"], 1), _fmt(row["kb_per_conn_after"], 1),
                 _fmt(row["cpu_s"], 1), _ratio(row["e2e_p99"], b.get("e2e_p99")),
                 _ratio(row["fanout_p99"], b.get("fanout_p99")),
                 _ratio(row["kb_per_conn_after"], b.get("kb_per_conn_after"))]
        lines.append(cells)
        if row["error"]:
            lines.append([f"  ^ FAILED: {row['error']}"] + [""] * (len(header) - 1))
    return _align(header, lines)


def broadcast_table(runs: list[dict]) -> str:
    """End-to-end p99 (ms) and count received of each broadcast, in order."""
    width = max((len(run.get("broadcasts", [])) for run in runs), default=0)
    header = ["server", "N"] + [f"#{i + 1} p99 / received" for i in range(width)]
    lines = []
    for run in runs:
        cells = [run["server"], f"{run['n']:,}"]
        for cast in run.get("broadcasts", []):
            mark = "" if cast["received"] == run["n"] else " !"
            cells.append(f"{_fmt(cast['e2e']['p99_ms'], 1)} / {cast['received']}{mark}")
        lines.append(cells + [""] * (len(header) - len(cells)))
    return _align(header, lines)


def schoolbell_table(runs: list[dict]) -> str:
    """Receipts, responsiveness during a broadcast, and reconnection (Schoolbell only)."""
    header = ["N", "receipts recorded", "healthz p50/p99/max (n)", "preview p50/p99/max (n)",
              "restart: all back", "all caught up", "after server up", "caught up"]
    lines = []
    for run in runs:
        if run["server"] != "schoolbell":
            continue
        extra = run.get("schoolbell", {})
        receipts = extra.get("receipts", {})
        reconnect = extra.get("reconnect")
        recorded = receipts.get("recorded_ms")
        lines.append([
            f"{run['n']:,}",
            "-" if recorded is None else f"{recorded:,.0f} ms ({receipts.get('acks', 0)} acks)",
            _probe_cell(extra.get("probes", {}).get("healthz")),
            _probe_cell(extra.get("probes", {}).get("preview")),
            "skipped" if reconnect is None else _seconds(reconnect.get("all_reconnected_s")),
            "-" if reconnect is None else _seconds(reconnect.get("all_caught_up_s")),
            "-" if reconnect is None else _seconds(reconnect.get("caught_up_after_server_up_s")),
            "-" if reconnect is None else f"{reconnect.get('caught_up')}/{reconnect.get('n')}",
        ])
    return _align(header, lines) if lines else ""


def _probe_cell(stats: dict | None) -> str:
    if not stats or not stats.get("count"):
        return "-"
    return f"{stats['p50_ms']:.0f}/{stats['p99_ms']:.0f}/{stats['max_ms']:.0f} ms ({stats['count']})"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _align(header: list[str], lines: list[list[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, names left-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    out = []
    for row in [header, *lines]:
        if len(row) > 1 and row[1] == "" and str(row[0]).startswith("  ^"):
            out.append(str(row[0]))  # a failure note spans the line
            continue
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def render(results: dict) -> str:
    """The whole report printed at the end of a run."""
    runs = results["runs"]
    parts = [
        "Latencies in ms: e2e = from the start of the send request to receipt at a client;",
        "fan-out = from the first client's receipt to each client's. Median over broadcasts",
        "of each one's p50/p99; max = the largest of all. RSS = the gunicorn worker's.",
        "",
        main_table(runs),
        "",
        "Each broadcast (e2e p99 ms / clients that received it):",
        broadcast_table(runs),
    ]
    extra = schoolbell_table(runs)
    if extra:
        parts += ["", "Schoolbell only (receipts: from the last ack sent until the API shows all "
                  "delivered; probes run while a broadcast is in flight; restart: from the "
                  "first close):", extra]
    return "\n".join(parts)


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))

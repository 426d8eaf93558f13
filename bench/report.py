"""The benchmark's output: plain-text tables (with ratios to the naive loop) and JSON."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

BASELINE = "naive-plain"
IN_PROCESS, REDIS, TWO_PROCESSES = "schoolbell", "schoolbell-redis", "schoolbell-2proc"


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
    memory = run.get("memory", {})

    def latency(kind: str) -> dict:
        return {
            "p50": _median([b[kind]["p50_ms"] for b in casts]),
            "p99": _median([b[kind]["p99_ms"] for b in casts]),
            "max": max((b[kind]["max_ms"] or 0 for b in casts), default=None),
        }

    return {
        "server": run["server"],
        "n": run["n"],
        "error": run.get("error"),
        "connect_s": run.get("connect", {}).get("connect_s"),
        "e2e": latency("e2e"),
        "fanout": latency("fanout"),
        "write_ms": _median([b.get("write_ms") for b in casts]),
        "received": min((b["received"] for b in casts), default=None),
        "rss_idle_mb": memory["rss_connected_kb"] / 1024 if memory else None,
        "kb_per_conn": memory.get("kb_per_conn_connected"),
        "kb_per_conn_after": memory.get("kb_per_conn_after_broadcasts"),
        "cpu_s": run.get("cpu", {}).get("total_s"),
        "cpu_per_broadcast_ms": _per_broadcast_ms(run.get("cpu"), casts),
        "redis_cpu_per_broadcast_ms": _per_broadcast_ms(run.get("redis_cpu"), casts),
    }


def _per_broadcast_ms(cpu: dict | None, casts: list[dict]) -> float | None:
    """CPU time over the measured broadcasts (from /proc, in 10 ms ticks), per broadcast."""
    if not cpu or not casts:
        return None
    return cpu["broadcasts_s"] * 1000 / len(casts)


def _ratio(value, base) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def _latencies(stats: dict) -> str:
    if stats["p99"] is None:
        return "-"
    return f"{stats['p50']:,.0f} / {stats['p99']:,.0f} / {stats['max']:,.0f}"


def main_table(runs: list[dict]) -> str:
    """Every server at every N, with ratios to the naive loop with plain frames (and
    end-to-end p99 to Flask-SocketIO's)."""
    rows = [summarize(run) for run in runs]
    naive = {r["n"]: r for r in rows if r["server"] == BASELINE and not r["error"]}
    socketio = {r["n"]: r for r in rows if r["server"] == "socketio" and not r["error"]}
    header = [
        "server",
        "N",
        "connect s",
        "e2e p50/p99/max",
        "fan-out p50/p99/max",
        "write ms",
        "received",
        "RSS idle MB",
        "KB/conn idle",
        "KB/conn after",
        "CPU s",
        "connect /naive",
        "e2e /naive",
        "fan-out /naive",
        "write /naive",
        "KB/conn /naive",
        "e2e /socketio",
    ]
    lines = []
    for row in rows:
        base = naive.get(row["n"])
        sio = socketio.get(row["n"])
        received = "-" if row["received"] is None else f"{row['received']}/{row['n']}"
        if row["received"] is not None and row["received"] < row["n"]:
            received += " !"
        lines.append(
            [
                row["server"],
                f"{row['n']:,}",
                _fmt(row["connect_s"], 1),
                _latencies(row["e2e"]),
                _latencies(row["fanout"]),
                _fmt(row["write_ms"], 0),
                received,
                _fmt(row["rss_idle_mb"], 0),
                _fmt(row["kb_per_conn"], 1),
                _fmt(row["kb_per_conn_after"], 1),
                _fmt(row["cpu_s"], 1),
                _ratio(row["connect_s"], base and base["connect_s"]),
                _ratio(row["e2e"]["p99"], base and base["e2e"]["p99"]),
                _ratio(row["fanout"]["p99"], base and base["fanout"]["p99"]),
                _ratio(row["write_ms"], base and base["write_ms"]),
                _ratio(row["kb_per_conn_after"], base and base["kb_per_conn_after"]),
                _ratio(row["e2e"]["p99"], sio and sio["e2e"]["p99"]),
            ]
        )
        if row["error"]:
            lines.append([f"  ^ FAILED: {row['error']}"])
    return _align(header, lines)


def broadcast_table(runs: list[dict]) -> str:
    """End-to-end p99 (ms) and count received of each broadcast, in order; for
    the servers that report it, their own time to write it to every socket."""
    width = max((len(run.get("broadcasts", [])) for run in runs), default=0)
    header = ["server", "N"] + [f"#{i + 1} p99 / received" for i in range(width)]
    lines = []
    for run in runs:
        cells = [run["server"], f"{run['n']:,}"]
        for cast in run.get("broadcasts", []):
            mark = "" if cast["received"] == run["n"] else " !"
            hub = f" (write {cast['write_ms']:.0f})" if cast.get("write_ms") is not None else ""
            if cast.get("write_ms_each"):
                hub = " (write " + "/".join(_fmt(ms) for ms in cast["write_ms_each"]) + ")"
            cells.append(f"{_fmt(cast['e2e']['p99_ms'], 1)} / {cast['received']}{mark}{hub}")
        lines.append(cells + [""] * (len(header) - len(cells)))
    return _align(header, lines)


def schoolbell_table(runs: list[dict]) -> str:
    """Receipts, responsiveness during a broadcast, and reconnection (Schoolbell only)."""
    header = [
        "N",
        "receipts recorded",
        "healthz p50/p99/max (n)",
        "preview p50/p99/max (n)",
        "complete",
        "restart: all back",
        "all caught up",
        "after server up",
        "caught up",
    ]
    lines = []
    for run in runs:
        if run["server"] != "schoolbell":
            continue
        extra = run.get("schoolbell", {})
        receipts = extra.get("receipts", {})
        reconnect = extra.get("reconnect")
        recorded = receipts.get("recorded_ms")
        lines.append(
            [
                f"{run['n']:,}",
                "-" if recorded is None else f"{recorded:,.0f} ms ({receipts.get('acks', 0)} acks)",
                _probe_cell(extra.get("probes", {}).get("healthz")),
                _probe_cell(extra.get("probes", {}).get("preview")),
                _complete(extra.get("probes", {})),
                "skipped" if reconnect is None else _seconds(reconnect.get("all_reconnected_s")),
                "-" if reconnect is None else _seconds(reconnect.get("all_caught_up_s")),
                "-"
                if reconnect is None
                else _seconds(reconnect.get("caught_up_after_server_up_s")),
                "-" if reconnect is None else f"{reconnect.get('caught_up')}/{reconnect.get('n')}",
            ]
        )
    return _align(header, lines) if lines else ""


def storm_table(runs: list[dict]) -> str:
    """The sign-in storm: a broadcast during 100 sign-ins against a quiet one."""
    header = [
        "N",
        "sign-ins",
        "answered",
        "302 / 503 / other",
        "503 without Retry-After",
        "quiet e2e p99",
        "storm e2e p99",
        "storm /quiet",
        "healthz p50/p99/max (n)",
    ]
    lines = []
    for run in runs:
        storm = run.get("schoolbell", {}).get("signin_storm")
        if not storm:
            continue
        burst = storm["storm"]["burst"]
        statuses = burst["statuses"]
        other = sum(n for code, n in statuses.items() if code not in ("302", "503"))
        quiet_p99 = storm["quiet"]["e2e"]["p99_ms"]
        storm_p99 = storm["storm"]["e2e"]["p99_ms"]
        lines.append(
            [
                f"{run['n']:,}",
                str(burst["count"]),
                f"{burst['all_answered_ms'] / 1000:.1f} s",
                f"{statuses.get('302', 0)} / {statuses.get('503', 0)} / {other}",
                str(burst["missing_retry_after"]),
                f"{quiet_p99:.0f} ms",
                f"{storm_p99:.0f} ms",
                f"{storm_p99 / quiet_p99:.2f}x" if quiet_p99 else "-",
                _probe_cell(storm["healthz"]),
            ]
        )
    return _align(header, lines) if lines else ""


def push_table(runs: list[dict]) -> str:
    """Web Push: N devices with no tab, and broadcasts to the open tabs meanwhile."""
    header = [
        "N devices",
        "accepted / refused / bad",
        "first push",
        "all pushed",
        "pushes/s",
        "worker CPU",
        "quiet p99 (median of each)",
        "during pushes p99 (each)",
        "during /quiet",
        "after p99",
    ]
    lines = []
    for run in runs:
        pushes = run.get("schoolbell", {}).get("pushes")
        if not pushes:
            continue
        stand_in = pushes["stand_in"]
        quiet = _median([b["e2e"]["p99_ms"] for b in pushes["quiet"]])
        during = [b["e2e"]["p99_ms"] for b in pushes["during"]]
        worst = max(during, default=None)
        span = (stand_in["last_at"] or 0) - (stand_in["first_at"] or 0)
        lines.append(
            [
                f"{pushes['devices']:,}",
                f"{stand_in['accepted']:,} / {stand_in['refused']} / {stand_in['errors']}",
                _seconds(pushes["first_push_s"]),
                _seconds(pushes["all_pushed_s"]),
                f"{stand_in['accepted'] / span:,.0f}" if span > 0 else "-",
                f"{pushes['worker_cpu_s']:.1f} s",
                f"{quiet:.0f} ms ("
                + " / ".join(f"{b['e2e']['p99_ms']:.0f}" for b in pushes["quiet"])
                + ")",
                " / ".join(f"{p:.0f}" for p in during) + " ms",
                f"{worst / quiet:.2f}x" if quiet and worst else "-",
                f"{pushes['quiet_after']['e2e']['p99_ms']:.0f} ms",
            ]
        )
    return _align(header, lines) if lines else ""


def _pair(a, b, digits: int = 0) -> str:
    return f"{_fmt(a, digits)} / {_fmt(b, digits)}"


def redis_table(runs: list[dict]) -> str:
    """The Redis broker against the in-process one: one worker each, same N."""
    rows = {(r["server"], r["n"]): r for r in map(summarize, runs)}
    header = [
        "N",
        "e2e p99 in-process / Redis",
        "e2e ratio",
        "fan-out p99 in-process / Redis",
        "fan-out ratio",
        "worker CPU ms/broadcast in-process / Redis",
        "CPU ratio",
        "redis-server CPU ms/broadcast",
        "CPU ratio with redis-server",
    ]
    lines = []
    for n in sorted({n for server, n in rows if server == REDIS}):
        local, redis = rows.get((IN_PROCESS, n)), rows[(REDIS, n)]
        if local is None:
            continue
        with_redis = None
        if redis["cpu_per_broadcast_ms"] is not None:
            with_redis = redis["cpu_per_broadcast_ms"] + (redis["redis_cpu_per_broadcast_ms"] or 0)
        lines.append(
            [
                f"{n:,}",
                _pair(local["e2e"]["p99"], redis["e2e"]["p99"]),
                _ratio(redis["e2e"]["p99"], local["e2e"]["p99"]),
                _pair(local["fanout"]["p99"], redis["fanout"]["p99"]),
                _ratio(redis["fanout"]["p99"], local["fanout"]["p99"]),
                _pair(local["cpu_per_broadcast_ms"], redis["cpu_per_broadcast_ms"]),
                _ratio(redis["cpu_per_broadcast_ms"], local["cpu_per_broadcast_ms"]),
                _fmt(redis["redis_cpu_per_broadcast_ms"], 1),
                _ratio(with_redis, local["cpu_per_broadcast_ms"]),
            ]
        )
        for row in (local, redis):
            if row["error"]:
                lines.append([f"  ^ {row['server']} FAILED: {row['error']}"])
    return _align(header, lines) if lines else ""


def two_process_table(runs: list[dict]) -> str:
    """Two processes holding N/2 clients each against one holding N, both with the Redis
    broker (sends go through the first of the two)."""
    one = {r["n"]: summarize(r) for r in runs if r["server"] == REDIS}
    header = [
        "N",
        "e2e p99 one / two",
        "e2e ratio",
        "e2e p99 A / B",
        "fan-out p99 one / two",
        "fan-out ratio",
        "write ms one / A / B",
        "received A + B",
        "worker CPU ms/broadcast one / A+B",
        "redis-server CPU ms/broadcast one / two",
    ]
    lines = []
    for run in runs:
        if run["server"] != TWO_PROCESSES or run["n"] not in one:
            continue
        two, single = summarize(run), one[run["n"]]
        casts = run.get("broadcasts", [])
        halves = [[b["by_url"][i] for b in casts if b.get("by_url")] for i in range(2)]
        writes = [
            _median([(b.get("write_ms_each") or [None, None])[i] for b in casts]) for i in range(2)
        ]
        received = " + ".join(
            "-" if not half else f"{min(h['received'] for h in half)}/{half[0]['expected']}"
            for half in halves
        )
        if two["received"] is not None and two["received"] < run["n"]:
            received += " !"
        lines.append(
            [
                f"{run['n']:,}",
                _pair(single["e2e"]["p99"], two["e2e"]["p99"]),
                _ratio(two["e2e"]["p99"], single["e2e"]["p99"]),
                _pair(*(_median([h["e2e"]["p99_ms"] for h in half]) for half in halves)),
                _pair(single["fanout"]["p99"], two["fanout"]["p99"]),
                _ratio(two["fanout"]["p99"], single["fanout"]["p99"]),
                f"{_fmt(single['write_ms'])} / {_pair(*writes)}",
                received,
                _pair(single["cpu_per_broadcast_ms"], two["cpu_per_broadcast_ms"]),
                _pair(single["redis_cpu_per_broadcast_ms"], two["redis_cpu_per_broadcast_ms"], 1),
            ]
        )
        for row in (single, two):
            if row["error"]:
                lines.append([f"  ^ {row['server']} FAILED: {row['error']}"])
    return _align(header, lines) if lines else ""


def _probe_cell(stats: dict | None) -> str:
    if not stats or not stats.get("count"):
        return "-"
    return (
        f"{stats['p50_ms']:.0f}/{stats['p99_ms']:.0f}/{stats['max_ms']:.0f} ms ({stats['count']})"
    )


def _complete(probes: dict) -> str:
    """Probe broadcasts that reached every client, e.g. "3/3" or "2/3 !"."""
    casts = probes.get("broadcasts")
    if not casts:
        return "-"
    stalled = len(probes.get("stalled", []))
    return f"{len(casts) - stalled}/{len(casts)}" + (" !" if stalled else "")


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _align(header: list[str], lines: list[list[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, names left-aligned."""
    notes = [row for row in lines if str(row[0]).startswith("  ^")]
    table = [row for row in [header, *lines] if row not in notes]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    out = []
    for row in [header, *lines]:
        if str(row[0]).startswith("  ^"):
            out.append(str(row[0]))  # a failure note spans the line
            continue
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def render(results: dict) -> str:
    """The whole report printed at the end of a run."""
    runs = results["runs"]
    parts = [
        "Latencies in ms: e2e = from the start of the send request to receipt at a client;",
        "fan-out = from the first client's receipt to each client's. p50 and p99: the median",
        "over the broadcasts of each one's; max: the largest of all. RSS and CPU: the gunicorn",
        "worker's; KB/conn = RSS growth from before connecting, per client (idle: all",
        "connected; after: after the broadcasts). CPU s: connecting plus broadcasting.",
        "write ms: the server's own time to write one broadcast to every socket (median;",
        "Schoolbell's hub logs it, the naive loop returns it; Socket.IO only queues).",
        "/naive, /socketio: ratios of p99 (and of write ms and KB/conn after) to",
        "naive-plain's and socketio's at the same N; below 1.00x is better.",
        "",
        main_table(runs),
        "",
        "Each broadcast (e2e p99 ms / clients that received it):",
        broadcast_table(runs),
    ]
    override = results.get("settings", {}).get("broker_url_override")
    if override:
        parts += [
            "",
            f"NOTE: BENCH_BROKER_URL={override} replaced the redis:// URL: the Redis rows",
            "below did not use the Redis broker (a check of the harness, not a measurement).",
        ]
    broker = redis_table(runs)
    if broker:
        parts += [
            "",
            "Redis broker vs in-process broker: one worker each, same N (the issue's bar: the",
            "Redis path at most 1.10x). p99: as in the main table. CPU ms/broadcast: the",
            "worker's CPU time over the measured broadcasts (/proc, 10 ms ticks) divided by",
            "their number; redis-server's apart (it shares CPU 0 with the worker).",
            broker,
        ]
    split = two_process_table(runs)
    if split:
        parts += [
            "",
            "Two processes vs one, both with the Redis broker: schoolbell-2proc (N/2 tabs on",
            "each of A and B, every send through A) against schoolbell-redis (one process,",
            "N tabs). Both processes AND redis-server share CPU 0: this measures what",
            "splitting costs, not a speed-up. e2e and fan-out over all N clients (A / B: each",
            "half's e2e p99); write ms: each hub's own; received: the fewest of a broadcast.",
            split,
        ]
    extra = schoolbell_table(runs)
    if extra:
        parts += [
            "",
            "Schoolbell only. Receipts: from the last `delivered` ack sent until the API",
            "shows all N delivered. healthz / preview: requested while a broadcast is in",
            "flight (complete: those broadcasts that reached every client). Restart: from",
            "the first close until all are back / have, by replay, what was sent while down.",
            extra,
        ]
    storm = storm_table(runs)
    if storm:
        parts += [
            "",
            "Sign-in storm (Schoolbell): 100 staff sign in at once (each an Argon2id check);",
            "a broadcast to everyone starts 150 ms later, /healthz is polled until the last",
            "sign-in is answered (302 signed in, or 503 + Retry-After past the queue's",
            "deadline). storm /quiet: e2e p99 against a broadcast just before, same run.",
            storm,
        ]
    pushes = push_table(runs)
    if pushes:
        parts += [
            "",
            "Web Push (Schoolbell): N guardians with one device each and no tab get one",
            "announcement; its pushes are due PUSH_AFTER_S after the send (first push / all",
            "pushed: counted from then), each encrypted for its device, VAPID-signed and",
            "posted to a stand-in push service that decrypts and checks it (bad: refused by",
            "it). Three broadcasts go to the N students' open tabs on the same worker before",
            "the pushes (quiet) and three while they go out; during /quiet: the worst of the",
            "three during against the median of the three quiet ones.",
            pushes,
        ]
    return "\n".join(parts)


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))

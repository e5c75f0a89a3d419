#!/usr/bin/env python3
"""Turns the raw results of benches/density.sh into a report: a Markdown table, an SVG chart
and one JSON file with everything. Standard library only.

Usage: python3 benches/report.py [OUT_DIR]          [default: target/bench-report]

Reads, in OUT_DIR:
    raw/machine.json      the machine and the run's settings (written by density.sh)
    raw/SERVER.json       `rollcall-load hold --json` output against SERVER
    raw/SERVER.meta.json  what density.sh saw of the server itself (peak RSS, CPU time)
    raw/SERVER.error      why SERVER has no result, when it has none
and writes OUT_DIR/results.json, OUT_DIR/density.md and OUT_DIR/density.svg.

Servers are listed in the order of `servers` in machine.json.
"""
import html
import json
import sys
from pathlib import Path

LABELS = {
    "rollcall": "rollcall",
    "bun": "Bun (uWebSockets)",
    "node-ws": "Node ws",
    "tokio-tungstenite": "tokio-tungstenite",
    "python-websockets": "Python websockets",
}


def pick(record, *names, default=None):
    """The first of `names` (dotted for nested objects) that `record` has."""
    for name in names:
        value = record
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            return value
    return default


def failures_total(value):
    """`failures` is a count or a tally `{"refused": 3, ...}`."""
    if isinstance(value, dict):
        return sum(v for v in value.values() if isinstance(v, (int, float)))
    return value


def summarize(name, load, meta, error):
    """The figures the table and the chart show, from one server's raw results."""
    row = {"server": name, "label": LABELS.get(name, name), "error": error}
    if load is None:
        return row
    row.update(
        target=pick(load, "connections"),
        up=pick(load, "up"),
        handshakes_per_sec=pick(load, "handshakes_per_second"),
        connect_seconds=pick(load, "connect_seconds"),
        failures=failures_total(pick(load, "failures", default=0)),
        failure_kinds=pick(load, "failures") if isinstance(pick(load, "failures"), dict) else None,
        dropped=failures_total(pick(load, "dropped", default=0)),
        dropped_kinds=pick(load, "dropped_by_kind"),
        rss_before=pick(load, "server.rss_before_bytes"),
        rss_up=pick(load, "server.up.rss_bytes"),
        rss_after=pick(load, "server.rss_end_bytes"),
        bytes_per_connection=pick(load, "server.bytes_per_connection"),
        cpu_us_per_handshake=pick(load, "server.cpu_us_per_handshake"),
        idle_cpu_percent=pick(load, "server.idle_cpu_percent"),
        min_pings=pick(load, "pings.min_per_connection"),
        ok=pick(load, "ok"),
    )
    if meta:
        row["peak_rss"] = meta.get("vmhwm_bytes")
        row["cpu_seconds"] = meta.get("cpu_seconds")
    return row


def load_results(out):
    raw = out / "raw"
    machine = json.loads((raw / "machine.json").read_text())
    rows, results = [], {}
    for name in machine.get("servers", []):
        load = meta = error = None
        path = raw / f"{name}.json"
        if path.exists():
            try:
                load = json.loads(path.read_text())
            except json.JSONDecodeError as problem:
                error = f"unreadable load-tool output: {problem}"
        if (raw / f"{name}.meta.json").exists():
            meta = json.loads((raw / f"{name}.meta.json").read_text())
        if (raw / f"{name}.error").exists():
            error = (raw / f"{name}.error").read_text().strip() or None
        if load is None and error is None:
            error = "no result"
        results[name] = {"load": load, "server": meta, "error": error}
        rows.append(summarize(name, load, meta, error))
    return machine, results, rows


# ---------------------------------------------------------------- formatting


def thousands(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def size(value):
    """Bytes as B, KiB or MiB, three significant figures or so."""
    if value is None:
        return "–"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value:,.0f} B"


def per_connection(value):
    """Bytes per connection: exact below 10 KiB, where the servers differ most."""
    if value is None or value >= 10 << 10:
        return size(value)
    return f"{value:,.0f} B"


def machine_line(machine):
    host = machine.get("machine", machine)
    memory = host.get("memory_bytes")
    parts = [
        host.get("cpu_model") or "unknown CPU",
        f"{host.get('nproc', '?')} cores",
        f"{memory / (1 << 30):.0f} GiB" if memory else None,
        f"Linux {host['kernel']}" if host.get("kernel") else None,
    ]
    return ", ".join(part for part in parts if part)


def settings_line(machine):
    run = machine.get("run", {})
    return (
        f"N = {thousands(run.get('connections'))} idle connections per server, "
        f"heartbeat interval {run.get('interval', '?')}, held {run.get('hold', '?')}, "
        f"{run.get('sources', '?')} source addresses"
    )


def tally(total, kinds):
    """`3 (refused 2, reset 1)`."""
    text = thousands(total)
    if isinstance(kinds, dict):
        named = ", ".join(f"{k} {v}" for k, v in kinds.items() if v)
        text = f"{text} ({named})" if named else text
    return text


def number(value, digits=0, suffix=""):
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


COLUMNS = [
    "server",
    "connections up",
    "memory per connection",
    "server RSS: before → all up → end of hold",
    "peak RSS",
    "handshakes/s",
    "server CPU per handshake",
    "server CPU while idle",
    "failed / dropped",
    "fewest pings answered",
]


def markdown(machine, rows):
    run = machine.get("run", {})
    lines = [
        "# Idle-connection density: rollcall and its peers",
        "",
        f"{settings_line(machine)}.  ",
        f"Machine: {machine_line(machine)}; load average at start "
        f"{' '.join(str(x) for x in run.get('loadavg_at_start', [])) or '?'}.  ",
        f"Run {run.get('date', '?')}, rollcall {run.get('rollcall_commit', '?')}: "
        f"`{run.get('command', 'benches/density.sh')}`",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "--:|" * (len(COLUMNS) - 1),
    ]
    for row in rows:
        if row.get("target") is None:
            cells = [row["label"], f"failed: {row['error']}"] + ["–"] * (len(COLUMNS) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [
            row["label"],
            f"{thousands(row.get('up'))} / {thousands(row.get('target'))}",
            per_connection(row.get("bytes_per_connection")),
            f"{size(row.get('rss_before'))} → {size(row.get('rss_up'))} → "
            f"{size(row.get('rss_after'))}",
            size(row.get("peak_rss")),
            thousands(row.get("handshakes_per_sec")),
            number(row.get("cpu_us_per_handshake"), 1, " µs"),
            number(row.get("idle_cpu_percent"), 2, " %"),
            f"{tally(row.get('failures'), row.get('failure_kinds'))} / "
            f"{tally(row.get('dropped'), row.get('dropped_kinds'))}",
            thousands(row.get("min_pings")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        if row["error"] and row.get("target") is not None:
            lines += ["", f"**{row['label']}**: {row['error']}"]
    timeout_ms = run.get("rollcall_heartbeat_timeout_ms")
    timeout = f"{timeout_ms / 1000:g}s" if timeout_ms else "10s"
    lines += [
        "",
        "Memory per connection: the server's resident memory (VmRSS) at the end of the hold "
        "minus before the first connection, over the connections up. Handshakes/s: "
        "connections up over the time from the first connect to the last upgrade, the load "
        "tool connecting as fast as it can (`--rate 0`); load tool and server share the "
        "machine's cores. Server CPU per handshake: its user + system time during the "
        "connect phase over the connections; while idle: its CPU share during the hold "
        "(heartbeats only). Peak RSS: VmHWM after the hold. Fewest pings answered: by the "
        "least-pinged client during the hold, so at least 1 means every heartbeat ran. "
        "Memory repeats within a few percent from run to run; handshakes/s, measured while the "
        "load tool (and anything else running) competes for the same cores, moved by up to "
        "60 % between runs on a 2-core machine, so compare the server CPU per handshake too.",
        "",
        f"rollcall runs with `--heartbeat-interval {run.get('interval', '?')} "
        f"--heartbeat-timeout {timeout}` and its clients connect with "
        "`?events=none&channel=big` as distinct users, so it also keeps every connection in a "
        "presence channel; it counts a connection up at its `welcome`. The peers "
        "(benches/peers/) hold connections, heartbeat them and nothing else, each written the "
        "way that library's users write it, with the library's defaults; a peer connection is "
        "up at its `101`.",
    ]
    versions = machine.get("versions", {})
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- SVG

WIDTH = 860
LABEL_W = 170
BAR_W = 520
ROW_H = 30
BAR_H = 18
COLORS = {"rollcall": "#c2410c"}
OTHER = "#64748b"


def bar_chart(y, title, note, rows, key, text):
    """One horizontal bar chart at height `y`; returns its SVG and its height."""
    values = [row.get(key) for row in rows]
    top = max((v for v in values if isinstance(v, (int, float))), default=0) or 1
    parts = [
        f'<text x="20" y="{y + 18}" class="title">{html.escape(title)}</text>',
        f'<text x="{WIDTH - 20}" y="{y + 18}" class="note" text-anchor="end">'
        f"{html.escape(note)}</text>",
    ]
    y += 32
    for row, value in zip(rows, values):
        middle = y + ROW_H / 2
        parts.append(
            f'<text x="{LABEL_W}" y="{middle + 5}" class="label" text-anchor="end">'
            f"{html.escape(row['label'])}</text>"
        )
        x0 = LABEL_W + 10
        if isinstance(value, (int, float)):
            width = max(2.0, BAR_W * value / top)
            color = COLORS.get(row["server"], OTHER)
            parts.append(
                f'<rect x="{x0}" y="{middle - BAR_H / 2}" width="{width:.1f}" '
                f'height="{BAR_H}" fill="{color}" rx="2"/>'
            )
            parts.append(
                f'<text x="{x0 + width + 6:.1f}" y="{middle + 5}" class="value">'
                f"{html.escape(text(value))}</text>"
            )
        else:
            reason = row.get("error") or "no value"
            parts.append(
                f'<text x="{x0 + 6}" y="{middle + 5}" class="missing">'
                f"{html.escape(reason[:80])}</text>"
            )
        y += ROW_H
    parts.append(
        f'<line x1="{LABEL_W + 10}" y1="{y - len(rows) * ROW_H}" x2="{LABEL_W + 10}" '
        f'y2="{y}" stroke="#94a3b8"/>'
    )
    return "\n".join(parts), 32 + len(rows) * ROW_H


def svg(machine, rows):
    body, y = [], 20
    title = "Idle WebSocket connections: rollcall and its peers"
    body.append(f'<text x="20" y="{y + 12}" class="heading">{html.escape(title)}</text>')
    body.append(
        f'<text x="20" y="{y + 32}" class="note">{html.escape(settings_line(machine))}</text>'
    )
    y += 50
    chart, height = bar_chart(
        y,
        "Memory per idle connection",
        "server RSS delta / connections · lower is better",
        rows,
        "bytes_per_connection",
        per_connection,
    )
    body.append(chart)
    y += height + 20
    chart, height = bar_chart(
        y,
        "Handshakes per second",
        "opening N connections as fast as possible · higher is better",
        rows,
        "handshakes_per_sec",
        lambda v: f"{v:,.0f}/s",
    )
    body.append(chart)
    y += height + 24
    run = machine.get("run", {})
    footer = f"{machine_line(machine)} · {run.get('date', '')} · benches/density.sh"
    body.append(f'<text x="20" y="{y}" class="note">{html.escape(footer)}</text>')
    y += 16
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
        f'viewBox="0 0 {WIDTH} {y}" role="img">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>\n"
        "text { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; fill: #0f172a; }\n"
        ".heading { font-size: 18px; font-weight: bold; }\n"
        ".title { font-size: 15px; font-weight: bold; }\n"
        ".label { font-size: 13px; }\n"
        ".value { font-size: 13px; font-weight: bold; }\n"
        ".note { font-size: 11.5px; fill: #475569; }\n"
        ".missing { font-size: 12px; fill: #b91c1c; font-style: italic; }\n"
        "</style>\n"
        f'<rect width="{WIDTH}" height="{y}" fill="#ffffff"/>\n'
        + "\n".join(body)
        + "\n</svg>\n"
    )


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench-report")
    if not (out / "raw" / "machine.json").exists():
        raise SystemExit(f"{out}/raw/machine.json not found: run benches/density.sh first")
    machine, results, rows = load_results(out)
    combined = dict(machine)
    combined["results"] = results
    combined["summary"] = rows
    (out / "results.json").write_text(json.dumps(combined, indent=2) + "\n")
    (out / "density.md").write_text(markdown(machine, rows))
    (out / "density.svg").write_text(svg(machine, rows))
    print(markdown(machine, rows), end="")
    print(f"\nwrote {out}/results.json, {out}/density.md, {out}/density.svg")


if __name__ == "__main__":
    main()

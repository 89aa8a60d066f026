"""``tagwarden report --html``: one self-contained HTML page of the deployment ledger.

The status matrix and, per component, an SVG timeline of what each environment slot
held; inline CSS and SVG, no scripts, nothing fetched. Pure: it turns the ledger's
entries and current records (plain dicts) into text; everything in them is untrusted and
escaped (``_h``).
"""
from __future__ import annotations

import calendar
import html
import time
from typing import Optional

from .reports import (HISTORY_COLUMNS, LEDGER_REF, _clean, _deleted, history_row, is_version,
                      short, slot_key, status_matrix, when)


# version colours, by the version's rank in its component: pale enough for dark labels
PALETTE = ("#80b1d3", "#b3de69", "#fdb462", "#bc80bd", "#8dd3c7", "#ffed6f", "#fccde5",
           "#a6cee3", "#ccebc5", "#d9b38c")
UNKNOWN = "#e0e0e0"
ROLLBACK = "#c62828"
WARN = "#ef6c00"

WIDTH, LEFT, RIGHT = 1000, 118, 16  # svg width, slot-label column, right margin
ROW, BAR = 26, 18
_CHAR = 6.6  # average label width per character at 11px


def _h(text) -> str:
    """Escaped for HTML text and attribute values, control characters made visible."""
    return html.escape(_clean("" if text is None else text), quote=True)


def _component_model(component: str, entries: list[dict], now: float) -> dict:
    """A component's releases and, per environment slot, the spans it held each value."""
    from .semver import try_parse

    releases, by_slot = [], {}
    for e in entries:
        if e.get("kind") == "version" or is_version(e.get("slot") or ""):
            if not _deleted(e) and e.get("decision") not in ("outside",):
                releases.append(e)
        else:
            by_slot.setdefault(e.get("slot") or "?", []).append(e)
    versions = sorted({e.get("slot") for e in releases} |
                      {e.get("version") for es in by_slot.values() for e in es
                       if e.get("version")} - {None},
                      key=lambda v: (try_parse(v).sort_key if try_parse(v) else (), v))
    colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
    slots = []
    for slot in sorted(by_slot, key=slot_key):
        spans, marks, cur = [], [], None
        for e in by_slot[slot]:
            gone, commit = _deleted(e), e.get("new_commit")
            if cur is not None:
                if not gone and commit and commit == cur["commit"] and \
                        e.get("version") == cur["version"]:
                    cur["again"].append(e)  # a redeploy: same commit, the clock runs on
                    continue
                cur["end"] = max(e["epoch"], cur["start"])
                spans.append(cur)
                cur = None
            if gone:
                marks.append(e)
                continue
            cur = {"start": e["epoch"], "end": None, "version": e.get("version"),
                   "commit": commit, "entry": e, "again": []}
        if cur is not None:
            cur["end"] = max(now, cur["start"])
            spans.append(cur)
        slots.append({"slot": slot, "spans": spans, "deleted": marks})
    return {"component": component, "releases": releases, "slots": slots,
            "colour": colour, "entries": entries}


def _ticks(t0: float, t1: float, room: float) -> tuple[float, list[tuple[float, str]]]:
    """A start aligned to a round time at or before t0, and labelled ticks up to t1."""
    span = max(t1 - t0, 1.0)
    hour, day = 3600, 86400
    most = max(2, int(room // 80))
    for step in (hour, 2 * hour, 3 * hour, 6 * hour, 12 * hour, day, 2 * day, 7 * day,
                 14 * day):
        if span / step <= most:
            offset = 4 * day if step >= 7 * day else 0  # weeks start on Monday
            start = (t0 - offset) // step * step + offset
            ticks, t = [], start
            while t <= t1:
                g = time.gmtime(t)
                label = time.strftime("%b %d", g) if step >= day or (g.tm_hour == 0 and
                                                                      g.tm_min == 0) \
                    else time.strftime("%H:%M", g)
                ticks.append((t, label))
                t += step
            return start, ticks
    for months in (1, 2, 3, 6, 12, 24, 60, 120):
        if span / (months * 30.4 * day) <= most:
            break
    g = time.gmtime(t0)
    index = (g.tm_year * 12 + g.tm_mon - 1) // months * months
    ticks = []
    while True:
        year, month = divmod(index, 12)
        t = calendar.timegm((year, month + 1, 1, 0, 0, 0))
        if t > t1:
            break
        ticks.append((t, time.strftime("%b %Y", time.gmtime(t))))
        index += months
    return ticks[0][0], ticks


def _fits(text: str, width: float) -> bool:
    return len(text) * _CHAR + 10 <= width


def _timeline_svg(model: dict, t0: float, t1: float, ticks, now: float) -> str:
    plot = WIDTH - LEFT - RIGHT
    scale = plot / max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return round(LEFT + (min(max(t, t0), t1) - t0) * scale, 1)

    rows = ["released"] + [s["slot"] for s in model["slots"]]
    height = len(rows) * ROW + 26
    axis_y = len(rows) * ROW + 4
    out = [(f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
            f'height="{height}" role="img" '
            f'aria-label="timeline of {_h(model["component"])}">')]
    for i, name in enumerate(rows):
        y = i * ROW
        if i % 2 == 0:
            out.append(f'<rect class="band" x="0" y="{y}" width="{WIDTH}" height="{ROW}"/>')
        out.append(f'<text class="slot" x="{LEFT - 10}" y="{y + ROW / 2 + 4}" '
                   f'text-anchor="end">{_h(name)}</text>')
    for t, label in ticks:
        if t < t0:
            continue
        out.append(f'<line class="grid" x1="{x(t)}" y1="0" x2="{x(t)}" y2="{axis_y}"/>')
        out.append(f'<text class="tick" x="{x(t)}" y="{axis_y + 15}" '
                   f'text-anchor="middle">{_h(label)}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" y1="{axis_y}" x2="{WIDTH - RIGHT}" '
               f'y2="{axis_y}"/>')
    # releases: a diamond per version created, labelled when there is room
    rel = sorted(model["releases"], key=lambda e: e["epoch"])
    for i, e in enumerate(rel):
        cx, cy, v = x(e["epoch"]), ROW / 2, e.get("slot") or "?"
        nxt = x(rel[i + 1]["epoch"]) if i + 1 < len(rel) else WIDTH - RIGHT
        tip = f"{v} {'seeded' if e.get('decision') == 'seed' else 'released'} " \
              f"{when(e['epoch'])} UTC by {e.get('pusher') or 'unknown'}"
        out.append(f'<g class="release" data-version="{_h(v)}"><title>{_h(tip)}</title>'
                   f'<path d="M{cx} {cy - 6}l6 6-6 6-6-6z" fill="{model["colour"].get(v, UNKNOWN)}"'
                   f' stroke="#444" stroke-width="1"/>')
        if _fits(v, nxt - cx - 4):
            out.append(f'<text class="label" x="{cx + 9}" y="{cy + 4}">{_h(v)}</text>')
        out.append("</g>")
    # slots: a bar per value held, from the move that set it to the next
    for i, s in enumerate(model["slots"], start=1):
        y = i * ROW + (ROW - BAR) / 2
        for span in s["spans"]:
            e = span["entry"]
            decision = e.get("decision") or ""
            x0, x1 = x(span["start"]), x(span["end"])
            w = max(round(x1 - x0, 1), 2.0)
            v = span["version"]
            label = v or (short(span["commit"]) if span["commit"] else "?")
            classes = ["bar"]
            stroke, dash, sw = "rgba(0,0,0,.35)", "", 1
            if decision == "rollback":
                classes.append("rollback")
                stroke, sw = ROLLBACK, 2
                label = "↩ " + label
            elif decision == "warn":
                classes.append("warned")
                stroke, sw, dash = WARN, 2, ' stroke-dasharray="4 2"'
            elif decision == "outside" or not span["commit"]:
                classes.append("outside")
                dash = ' stroke-dasharray="3 2"'
            fill = model["colour"].get(v, UNKNOWN) if v else UNKNOWN
            tip = [f"{s['slot']}: {v or label} ({short(span['commit'])})",
                   f"{decision or 'moved'} {when(span['start'])} UTC by "
                   f"{e.get('pusher') or 'unknown'}" +
                   (f", push {e['push_id']}" if e.get("push_id") else ""),
                   f"held until {when(span['end'])} UTC" if span["end"] < now else
                   "holds it now"]
            tip += [f"redeployed {when(a['epoch'])} UTC by {a.get('pusher') or 'unknown'}"
                    for a in span["again"]]
            out.append(f'<g class="{" ".join(classes)}" data-slot="{_h(s["slot"])}" '
                       f'data-version="{_h(v or "")}" data-decision="{_h(decision)}">'
                       f'<title>{_h(chr(10).join(tip))}</title>'
                       f'<rect x="{x0}" y="{y}" width="{w}" height="{BAR}" rx="3" '
                       f'fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dash}/>')
            if decision == "rollback":
                out.append(f'<rect x="{x0}" y="{y}" width="3" height="{BAR}" '
                           f'fill="{ROLLBACK}"/>')
            for a in span["again"]:
                ax = x(a["epoch"])
                out.append(f'<line class="redeploy" x1="{ax}" y1="{y + 3}" x2="{ax}" '
                           f'y2="{y + BAR - 3}"/>')
            if _fits(label, w):
                out.append(f'<text class="label" x="{x0 + (7 if decision == "rollback" else 5)}"'
                           f' y="{y + BAR / 2 + 4}">{_h(label)}</text>')
            out.append("</g>")
        for e in s["deleted"]:
            dx = x(e["epoch"])
            tip = f"{s['slot']} deleted {when(e['epoch'])} UTC by {e.get('pusher') or 'unknown'}"
            out.append(f'<g class="deleted" data-slot="{_h(s["slot"])}"><title>{_h(tip)}</title>'
                       f'<path d="M{dx - 4} {y + 5}l8 8m0 -8l-8 8" stroke="{ROLLBACK}" '
                       f'stroke-width="2"/></g>')
    nx = x(now)
    out.append(f'<line class="now" x1="{nx}" y1="0" x2="{nx}" y2="{axis_y}"/>')
    out.append("</svg>")
    return "".join(out)


CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #656d76; --line: #d0d7de;
  --band: #f6f8fa; --accent: #0969da;
  --mono: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace;
  --sans: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans",
    sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 var(--sans); color: var(--ink); background: #fff; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 64px; }
header h1 { font-size: 22px; margin: 0 0 4px; }
header h1 .repo { font-family: var(--mono); }
header p { margin: 0; color: var(--muted); }
nav { margin-top: 8px; font-size: 13px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
.empty { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; }
.scroll { overflow-x: auto; }
table.matrix { width: 100%; font-size: 13px; }
.matrix th, .matrix td { border: 1px solid var(--line); padding: 5px 8px; text-align: left;
  vertical-align: top; white-space: nowrap; }
.matrix thead th { background: var(--band); position: sticky; top: 0; z-index: 1; }
.matrix tbody tr:nth-child(even) > * { background: #fbfcfd; }
.matrix th[scope=row] { font-weight: normal; font-family: var(--mono); font-size: 12.5px; }
.matrix th[scope=row] b { font-weight: 600; }
.path { color: var(--muted); }
.ver { font-weight: 600; font-family: var(--mono); font-size: 12.5px; }
.swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px;
  margin-right: 5px; border: 1px solid rgba(0,0,0,.35); vertical-align: 0; }
.since { display: block; color: var(--muted); font-size: 11.5px; }
td.none { color: #b0b7be; text-align: center; }
.badge { display: inline-block; font-size: 10.5px; line-height: 1; padding: 2px 5px;
  border-radius: 8px; margin-left: 5px; vertical-align: 1px; font-weight: 600; }
.badge.rollback { background: #ffebe9; color: #c62828; border: 1px solid #f5b5b0; }
.badge.warned { background: #fff1e0; color: #b35400; border: 1px solid #f3c58d; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; color: var(--muted);
  font-size: 12.5px; margin: 0 0 12px; }
.legend svg { vertical-align: -3px; margin-right: 4px; }
.axisnote, .note { color: var(--muted); font-size: 12.5px; margin: -4px 0 12px; }
.note { margin: 6px 0 0; }
article { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px 6px;
  margin: 0 0 14px; break-inside: avoid; }
article h3 { margin: 0 0 6px; font-size: 14px; font-family: var(--mono);
  font-weight: normal; display: flex; gap: 12px; align-items: baseline; }
article h3 b { font-weight: 600; }
article h3 .meta { margin-left: auto; font-family: var(--sans); font-size: 12px;
  color: var(--muted); }
svg.timeline { display: block; max-width: 100%; height: auto; font-family: var(--sans); }
svg.timeline .band { fill: var(--band); }
svg.timeline .slot { font-size: 12px; fill: var(--ink); font-family: var(--mono); }
svg.timeline .tick { font-size: 11px; fill: var(--muted); }
svg.timeline .label { font-size: 11px; fill: #111; font-weight: 600; }
svg.timeline .grid { stroke: #e3e7eb; stroke-width: 1; }
svg.timeline .axis { stroke: #8c959f; stroke-width: 1; }
svg.timeline .now { stroke: var(--accent); stroke-width: 1.5; stroke-dasharray: 4 3; }
svg.timeline .redeploy { stroke: rgba(0,0,0,.55); stroke-width: 1.5; }
svg.timeline .bar.rollback .label { fill: #8e0000; }
details { margin: 4px 0 6px; font-size: 12.5px; }
summary { cursor: pointer; color: var(--accent); }
table.moves { margin-top: 6px; font-size: 12px; }
.moves th, .moves td { padding: 3px 10px 3px 0; text-align: left; white-space: nowrap;
  border-bottom: 1px solid #eef0f2; }
.moves th { color: var(--muted); font-weight: 600; }
.moves td.mono { font-family: var(--mono); }
.moves tr.rollback td.decision { color: #c62828; font-weight: 600; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
@media print { .matrix thead th { position: static; } details { display: none; } }
"""


def _component_cell(component: str, anchor: Optional[str]) -> str:
    path, _, name = component.rpartition("/")
    inner = f'<span class="path">{_h(path)}/</span><b>{_h(name)}</b>' if path else \
        f"<b>{_h(name)}</b>"
    return f'<a href="#{anchor}">{inner}</a>' if anchor else inner


def _matrix_html(matrix: dict, colours: dict, anchors: dict) -> str:
    if not matrix["rows"]:
        return '<p class="empty">The ledger records no managed tag yet.</p>'
    head = "".join(f'<th scope="col">{_h(s)}</th>' for s in ["component", "latest"] +
                   matrix["slots"])
    out = [f'<div class="scroll"><table class="matrix"><thead><tr>{head}</tr></thead><tbody>']
    for row in matrix["rows"]:
        c = row["component"]
        cells = [f'<th scope="row">{_component_cell(c, anchors.get(c))}</th>']
        for slot, held in [("latest", row["latest"])] + \
                [(s, row["slots"].get(s)) for s in matrix["slots"]]:
            if not held:
                cells.append(f'<td class="cell none" data-slot="{_h(slot)}">–</td>')
                continue
            v = held.get("version")
            what = v or short(held.get("commit"))
            colour = colours.get(c, {}).get(v, UNKNOWN) if v else UNKNOWN
            badge = ""
            if slot != "latest" and held.get("decision") == "rollback":
                badge = '<span class="badge rollback" title="the last move was a rollback">' \
                        '↩ rollback</span>'
            elif slot != "latest" and held.get("decision") == "warn":
                badge = '<span class="badge warned" title="a rule warned on the last move">' \
                        'warned</span>'
            tip = f"{what} ({short(held.get('commit'))}) since {when(held.get('since'))} UTC" + \
                  (f"; last moved by {held['pusher']}" if held.get("pusher") else "")
            cells.append(f'<td class="cell" data-slot="{_h(slot)}" data-version="{_h(v or "")}"'
                         f' title="{_h(tip)}"><span class="swatch" style="background:{colour}">'
                         f'</span><span class="ver">{_h(what)}</span>{badge}'
                         f'<span class="since">{_h(when(held.get("since")))}</span></td>')
        out.append(f'<tr data-component="{_h(c)}">{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    out.append('<p class="note">Each cell: the version the slot holds and, below it, since '
               'when (UTC) it has held that commit. <i>latest</i>: the highest version tag '
               'and when it was released. Empty: the slot does not exist (or was deleted).</p>')
    return "".join(out)


def _legend() -> str:
    def swatch(body: str) -> str:
        return f'<svg width="26" height="14" viewBox="0 0 26 14">{body}</svg>'

    items = [
        (swatch(f'<rect x="1" y="1" width="24" height="12" rx="3" fill="{PALETTE[0]}" '
                'stroke="rgba(0,0,0,.35)"/>'), "a version held, from the move to the next"),
        (swatch('<path d="M13 1l6 6-6 6-6-6z" fill="#b3de69" stroke="#444"/>'),
         "version released"),
        (swatch(f'<rect x="1" y="1" width="24" height="12" rx="3" fill="#f3f3f3" '
                f'stroke="{ROLLBACK}" stroke-width="2"/><rect x="1" y="1" width="3" '
                f'height="12" fill="{ROLLBACK}"/>'), "↩ rollback"),
        (swatch(f'<rect x="1" y="1" width="24" height="12" rx="3" fill="#f3f3f3" '
                f'stroke="{WARN}" stroke-width="2" stroke-dasharray="4 2"/>'), "a rule warned"),
        (swatch(f'<rect x="1" y="1" width="24" height="12" rx="3" fill="{UNKNOWN}" '
                'stroke="rgba(0,0,0,.35)" stroke-dasharray="3 2"/>'),
         "moved outside tagwarden / no version"),
        (swatch(f'<rect x="1" y="1" width="24" height="12" rx="3" fill="{PALETTE[0]}" '
                'stroke="rgba(0,0,0,.35)"/><line x1="13" y1="4" x2="13" y2="10" '
                'stroke="rgba(0,0,0,.55)" stroke-width="1.5"/>'), "redeployed (same commit)"),
        (swatch(f'<path d="M9 3l8 8m0 -8l-8 8" stroke="{ROLLBACK}" stroke-width="2"/>'),
         "slot deleted"),
        (swatch('<line x1="13" y1="0" x2="13" y2="14" stroke="#0969da" stroke-width="1.5" '
                'stroke-dasharray="4 3"/>'), "now"),
    ]
    return '<div class="legend">' + "".join(f"<span>{s}{_h(t)}</span>" for s, t in items) + \
        "</div>"


def _moves_html(entries: list[dict]) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in HISTORY_COLUMNS)
    rows = []
    for e in reversed(entries):
        cells = history_row(e)
        css = ["", "", "decision", "mono", "mono", "", "mono"]
        tds = "".join(f'<td class="{k}">{_h(v)}</td>' if k else f"<td>{_h(v)}</td>"
                      for k, v in zip(css, cells))
        rows.append(f'<tr class="{_h(e.get("decision") or "")}">{tds}</tr>')
    n = len(entries)
    return (f"<details><summary>{n} recorded move{'s' if n != 1 else ''} "
            f"(newest first)</summary><div class=\"scroll\"><table class=\"moves\"><thead><tr>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>")


def render_html(repo: str, entries: list[dict], current: dict[str, dict], now: float) -> str:
    """The report: a pure function of the ledger and ``now`` (same input, same bytes)."""
    matrix = status_matrix(current)
    components = sorted({e["component"] for e in entries if e.get("component")})
    anchors = {c: f"c{i}" for i, c in enumerate(components)}
    by_component: dict[str, list[dict]] = {c: [] for c in components}
    for e in entries:
        if e.get("component") in by_component and isinstance(e.get("epoch"), (int, float)):
            by_component[e["component"]].append(e)
    epochs = [e["epoch"] for es in by_component.values() for e in es]
    t_first = min(epochs) if epochs else now
    t1 = max([now] + epochs)
    if t1 - t_first < 3600:
        t1 = t_first + 3600
    t0, ticks = _ticks(t_first, t1, WIDTH - LEFT - RIGHT)
    models = [_component_model(c, by_component[c], now) for c in components]
    colours = {m["component"]: m["colour"] for m in models}
    latest_of = {r["component"]: r["latest"] for r in matrix["rows"]}
    generated = when(now)
    out = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>Deployments: {_h(repo)}</title><style>{CSS}</style></head><body><main>"
           f'<header id="top"><h1>Deployments of <span class="repo">{_h(repo)}</span></h1>'
           f"<p>Generated {_h(generated)} UTC from {LEDGER_REF}: {len(entries)} ledger "
           f"entr{'y' if len(entries) == 1 else 'ies'}, {len(components)} "
           f"component{'s' if len(components) != 1 else ''}"
           + (f", {_h(when(t_first))} to {_h(generated)}" if epochs else "") +
           ". All times are UTC.</p>"
           '<nav><a href="#status">Status</a> · <a href="#timelines">Timelines</a></nav>'
           "</header>",
           '<section id="status"><h2>Status: what each environment holds now</h2>',
           _matrix_html(matrix, colours, anchors), "</section>",
           '<section id="timelines"><h2>Timelines: what each environment held</h2>']
    if not models:
        out.append('<p class="empty">Nothing recorded yet.</p>')
    else:
        out.append(_legend())
        out.append(f'<p class="axisnote">One time axis for every component, '
                   f'{_h(when(t0))} to now ({_h(generated)}). Hover a bar for who moved it.</p>')
    for m in models:
        c = m["component"]
        path, _, name = c.rpartition("/")
        latest = latest_of.get(c)
        meta = f"latest {latest['version']}" if latest else "no version"
        out.append(f'<article id="{anchors[c]}" data-component="{_h(c)}"><h3>'
                   f'<span><span class="path">{_h(path)}/</span><b>{_h(name)}</b></span>'
                   f'<span class="meta">{_h(meta)} · <a href="#top">↑ top</a></span></h3>')
        out.append(_timeline_svg(m, t0, t1, ticks, now))
        out.append(_moves_html(m["entries"]))
        out.append("</article>")
    out.append(f"</section><footer>tagwarden report · generated {_h(generated)} UTC · "
               "read-only view of the deployment ledger</footer></main></body></html>\n")
    return "".join(out)

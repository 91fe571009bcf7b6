"""Showing a report: plain text for the terminal, HTML (with one SVG plot per
criterion) for people, CSV and JSON Lines for every rating.

The HTML is rendered by Jinja2 with autoescaping on, so item text, system
names and answers are data, never markup. CSV cells that a spreadsheet would
run as a formula (starting with = + - @ or a tab/CR) get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from html import escape
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
EXPORT_COLUMNS = ("id", "rater", "item", "segment", "role", "criterion", "value", "shown", "flip", "position",
                  "first", "second", "elapsed_ms", "created_at", "updated_at", "revision")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    env.filters["num"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.0f}%"
    env.globals["interval_plot"] = interval_plot
    env.globals["likert_rows"] = lambda rows: [(r["system"], r["value"], r["low"], r["high"]) for r in rows]
    env.globals["task_rows"] = lambda rows: [(r["system"], r["success"]["value"], r["success"]["low"],
                                               r["success"]["high"]) for r in rows]
    env.globals["bt_rows"] = lambda rows: [(r["system"], r["rating"], r["rating_low"], r["rating_high"])
                                           for r in rows]
    return env


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def text_report(report: dict) -> str:
    """A few screens of text: ranking, per-kind tables, agreement, flagged raters."""
    study = report["study"]
    lines = [f"study {study['name']} ({study['kind']}, {study['status']}): {study['items']} items, "
             f"{study['check_items']} check items, {report['ratings']} ratings", "", "ranking:"]
    lines += [f"  {r['rank']}. {r['system']}  {r['measure']} {_fmt(r['score'])}" for r in report["ranking"]]
    for criterion, rows in report.get("likert", {}).items():
        lines.append(f"\nLikert {criterion}: mean [95% bootstrap interval] (n ratings)")
        lines += [f"  {r['system']:<24} {_fmt(r['value'])} [{_fmt(r['low'])}, {_fmt(r['high'])}] ({r['n']})"
                  for r in rows]
    if "task" in report:
        lines.append("\ntask success: yes rate [95% Wilson]; yes-or-partly rate")
        lines += [f"  {r['system']:<24} {_fmt(r['success']['value'])} [{_fmt(r['success']['low'])}, "
                  f"{_fmt(r['success']['high'])}]; {_fmt(r['useful']['value'])} (n {r['n']})" for r in report["task"]]
    for criterion, block in report.get("pairwise", {}).items():
        bt = block["bradley_terry"]
        note = " (regularised: a system won or lost every comparison)" if bt["regularised"] else ""
        lines.append(f"\npairwise {criterion}: Bradley-Terry rating [95% bootstrap], Elo{note}")
        lines += [f"  {r['system']:<24} {r['rating']:.0f} [{r['rating_low']:.0f}, {r['rating_high']:.0f}]"
                  f"  Elo {block['elo'][r['system']]:.0f}" for r in bt["systems"]]
        for pair, d in bt["differences"].items():
            lines.append(f"  θ({pair}) = {_fmt(d['value'])} [{_fmt(d['low'])}, {_fmt(d['high'])}]")
        bias = block["position_bias"]
        lines.append(f"  left side wins {bias['left_wins']} of {bias['decisive']} decisive judgements "
                     f"({_fmt(bias['rate'])} [{_fmt(bias['low'])}, {_fmt(bias['high'])}]); {bias['ties']} ties")
    lines.append("\nagreement:")
    lines += [f"  {c}: Krippendorff α ({a['level']}) {_fmt(a['krippendorff_alpha'], 3)}, Fleiss κ "
              f"{_fmt(a['fleiss_kappa'], 3)} over {a['units']} items" for c, a in report["agreement"].items()]
    flagged = [r for r in report["raters"] if r["flagged"]]
    lines.append(f"\nraters: {len(report['raters'])}, flagged {len(flagged)}")
    lines += [f"  {r['rater']}: {'; '.join(r['reasons'])}" for r in flagged]
    if "metrics" in report:
        lines += _metric_lines(report["metrics"])
    return "\n".join(lines)


def _metric_lines(block: dict) -> list[str]:
    if "skipped" in block:
        return [f"\nmetrics vs people: skipped, {block['skipped']}"]
    lines = [f"\nmetrics vs people ({block['units']} rated units): Pearson / Spearman / Kendall τ_b"]
    for level in ("segment", "system"):
        for metric, c in block[level].items():
            lines.append(f"  {level:<7} {metric:<7} {_fmt(c['pearson'], 3)} / {_fmt(c['spearman'], 3)} / "
                         f"{_fmt(c['kendall'], 3)} (n {c['n']})")
    return lines


def interval_plot(title: str, rows: list[tuple], low: float | None = None, high: float | None = None) -> str:
    """An SVG of one interval per row, rows = [(label, value, low, high)], best first."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return ""
    lo = min(r[2] if r[2] is not None else r[1] for r in rows) if low is None else low
    hi = max(r[3] if r[3] is not None else r[1] for r in rows) if high is None else high
    span = (hi - lo) or 1.0
    width, left, right, row_h = 640, 190, 20, 26
    height = 40 + row_h * len(rows)

    def x(v: float) -> float:
        return left + (width - left - right) * (v - lo) / span

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}"><title>{escape(title)}</title>',
             f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for k, (label, value, a, b) in enumerate(rows):
        y = 34 + row_h * k
        a, b = (value if a is None else a), (value if b is None else b)
        parts.append(f'<text x="4" y="{y + 4}" font-size="12">{escape(str(label)[:28])}</text>'
                     f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y}" y2="{y}" stroke="#2b6cb0" stroke-width="3"/>'
                     f'<circle cx="{x(value):.1f}" cy="{y}" r="5" fill="#1a365d"/>'
                     f'<text x="{min(x(b) + 6, width - 60):.1f}" y="{y - 6}" font-size="10">{value:.2f}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="10">{lo:.2f}</text>'
                 f'<text x="{width - right - 30}" y="{height - 4}" font-size="10">{hi:.2f}</text></svg>')
    return "".join(parts)


def html_report(report: dict, standalone: bool = True) -> str:
    """The report page; `standalone` inlines the stylesheet (a file to mail around)."""
    css = (STATIC / "app.css").read_text("utf-8") if standalone else None
    return environment().get_template("report.html").render(report=report, css=css, standalone=standalone)


def _safe_cell(value):
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def ratings_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([_safe_cell(row.get(c)) for c in EXPORT_COLUMNS])
    return out.getvalue()


def ratings_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps({c: row.get(c) for c in EXPORT_COLUMNS}, ensure_ascii=False) + "\n" for row in rows)

"""``report.html``: the validation report as one self-contained page (no CDN, no script, plots inline).

It replaces GX's Data Docs as the page a person opens from MLflow or a
Prefect artifact: Data Docs load their CSS and JavaScript from CDNs (empty
offline) and weigh megabytes per run. This page embeds its few plots as PNG
data URIs and stays small; GX's raw results stay beside it as JSON.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servegate.validation.report import ValidationReport

MAX_IMAGE_BYTES = 400_000  # a plot larger than this is linked, not embedded

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top;font-size:14px}th{background:#f2f2f2}.failed{color:#b00020;font-weight:bold}
.passed{color:#1b5e20}.skipped{color:#8a6d00}img{max-width:48%;margin:4px;border:1px solid #ddd}"""


def _figures(report: "ValidationReport") -> str:
    cells = []
    # Grouped by output: the first output's plots (plain names) first, then each other output's (``name.<output>``).
    for name, path in sorted(report.artifacts.items(), key=lambda item: (item[0].partition(".")[2], item[0])):
        p = Path(path)
        if p.suffix.lower() != ".png" or not p.is_file():
            continue
        data = p.read_bytes()
        if len(data) > MAX_IMAGE_BYTES:
            cells.append(f'<p><a href="{escape(p.name)}">{escape(name)}</a> ({len(data)} bytes)</p>')
        else:
            encoded = base64.b64encode(data).decode("ascii")
            cells.append(f'<img alt="{escape(name)}" title="{escape(name)}" src="data:image/png;base64,{encoded}">')
    return "\n".join(cells)


def _rows(report: "ValidationReport") -> str:
    rows = []
    for c in report.checks:
        figures = "<br>".join(
            f'<span class="{"failed" if m.threshold is not None and not m.passed else ""}">{escape(m.describe())}'
            f'{" [GX " + escape(m.expectation or "") + "]" if m.engine == "gx" else ""}</span>'
            for m in c.measurements)
        rows.append(f'<tr><td>{escape(c.name)}</td><td class="{c.status}">{c.status.upper()}</td>'
                    f"<td>{figures}</td><td>{escape(c.message)}</td></tr>")
    return "\n".join(rows)


def render_html(report: "ValidationReport") -> str:
    outputs = "".join(f"<li>output <code>{escape(o['name'])}</code>: {escape(o['task'])} "
                      f"({escape(o['task_reason'])})</li>" for o in report.outputs)
    if report.unvalidated_outputs:
        outputs += (f"<li>outputs not validated: {escape(', '.join(report.unvalidated_outputs))} "
                    "(config <code>outputs:</code> validates several)</li>")
    not_run = "".join(f"<li><b>{escape(g['check'])}</b>: {escape(g['reason'])}</li>" for g in report.gates_not_run)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>validation of {escape(report.model_name)}</title>
<style>{_CSS}</style></head><body>
<h1>Validation of <code>{escape(report.model_name)}</code>:
<span class="{report.verdict}">{report.verdict.upper()}</span></h1>
<ul><li>candidate: {escape(report.candidate)}; baseline: {escape(report.baseline or "none")}</li>
<li>reference rows: {report.rows}; transport: {escape(report.transport)}</li>{outputs}</ul>
{"<h2>Gates that did not run</h2><ul>" + not_run + "</ul>" if not_run else ""}
<h2>Checks</h2>
<table><tr><th>check</th><th>status</th><th>figures</th><th>message</th></tr>
{_rows(report)}
</table>
<h2>Plots</h2>
{_figures(report)}
</body></html>
"""

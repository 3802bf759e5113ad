"""The report as one self-contained HTML page (styles inline, figures as data URLs, no external resource)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

__all__ = ["page"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:1300px;margin:0 auto;
padding:16px 24px;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em}.warn-box{background:#fff7e6;border-left:4px solid #f0a020;padding:8px 14px}
.warn-box li,.findings li{margin:.3em 0}
table{border-collapse:collapse;margin:12px 0 20px;font-size:.9em}caption{text-align:left;color:#444;
padding:4px 0 8px;font-size:.92em;max-width:1250px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}td.best{font-weight:700;background:#e8f4ea}
td.warn{background:#fff1e0}td.floor{color:#b22}.count{display:block;font-size:.75em;color:#777}
figure{margin:18px 0 28px}figure img{display:block;max-width:100%;height:auto}
figcaption{color:#444;font-size:.92em;margin-top:6px;max-width:1250px}
details pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:.8em;max-height:480px}
"""


def _figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f"<figure id='{html.escape(name)}'><img alt='{html.escape(caption[:120])}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")


def _warnings(warn: dict[str, list[str]]) -> str:
    titles = {"undefined": "Undefined Φ (counted in Table 1, never averaged in)",
              "unconverged": "Fits that did not converge", "flat": "Accuracies that do not move with ρ"}
    parts = []
    for key, items in warn.items():
        if items:
            shown = "".join(f"<li>{html.escape(t)}</li>" for t in items[:12])
            more = f"<li>... and {len(items) - 12} more (results.csv has every row)</li>" if len(items) > 12 else ""
            parts.append(f"<h3>{titles[key]}</h3><ul>{shown}{more}</ul>")
    return f"<div class='warn-box'>{''.join(parts)}</div>" if parts else "<p>No warnings: every Φ is defined, " \
        "every fit converged, every accuracy moves with ρ.</p>"


def _provenance(prov: dict[str, Any]) -> str:
    rows = []
    for model, splits in prov.get("stores", {}).items():
        for split, s in splits.items():
            rows.append(f"<tr><td>{html.escape(model)}</td><td>{split}</td><td>{s.get('rows', '')}</td>"
                        f"<td>{s.get('classes', '')}</td><td><code>{html.escape(str(s.get('key', '')))}</code></td>"
                        f"<td><code>{html.escape(str(s.get('path', '')))}</code></td></tr>")
    cfg = prov.get("config", {})
    settings = "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(json.dumps(v, default=str))}"
                       "</code></td></tr>" for k, v in cfg.items())
    raw = html.escape(json.dumps(prov, indent=1, default=str))
    return ("<h3>Stores</h3><table><tr><th>model</th><th>split</th><th>rows</th><th>classes</th><th>key</th>"
            f"<th>path</th></tr>{''.join(rows)}</table><h3>Settings</h3><table>{settings}</table>"
            f"<details><summary>provenance.json</summary><pre>{raw}</pre></details>")


def page(results: Path, rows: list[dict[str, Any]], text: dict[str, Any], tables: str,
         figures: list[tuple[str, bytes, str]], prov: dict[str, Any], created: str, version: str) -> str:
    """The whole page."""
    models = sorted({r["model"] for r in rows})
    interps = sorted({r["interpreter"] for r in rows})
    findings = "".join(f"<li>{html.escape(t)}</li>" for t in text["findings"])
    figs = "".join(_figure(*f) for f in figures)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width'><title>Coreset-based interpretation: {html.escape(', '.join(models))}</title>"
            f"<style>{_STYLE}</style></head><body><h1>Coreset-based interpretation of {html.escape(', '.join(models))}"
            f"</h1><p class='meta'>{html.escape(', '.join(interps))} · {len(rows)} result rows from "
            f"<code>{html.escape(str(results))}</code> · actstore {html.escape(version)} · {created}</p>"
            f"<h2>What was run</h2><p>{html.escape(text['run'])}</p><h2>What the numbers say</h2>"
            f"<ul class='findings'>{findings}</ul><h2>Warnings</h2>{_warnings(text['warnings'])}"
            f"<h2>Table 1: robustness of Φ to the data budget</h2>{tables}<h2>Figures</h2>{figs}"
            f"<h2>Provenance</h2>{_provenance(prov)}</body></html>")

"""scorecard.html: one self-contained page (inline PNG plots made with matplotlib, a tiny filter script).

No external assets, so the file can be attached to a CI run or mailed and still render.
The page marks `<body data-plots-loaded=N>` once the browser has decoded N plot images,
which the headless-Chromium test reads back.
"""

from __future__ import annotations

import base64
import html
import io
import json

import matplotlib

matplotlib.use("Agg")  # no display on CI machines; must precede pyplot
import matplotlib.pyplot as plt

from falsify.report.comparison import QUESTIONS, Question
from falsify.report.scorecard import Scorecard, item_deltas
from falsify.report.scorecard_md import evidence_text

STATUS_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "not run": "#8c959f"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def loss_plot(curves: dict) -> str | None:
    """Training and validation loss of run A (and the same-seed repeat, dashed) as base64 PNG."""
    series = [(k, v) for k, v in curves.items() if v]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, points in series:
        xs, ys = zip(*points)
        style = "--" if "repeat" in name else "-"
        marker = "o" if "val" in name else None
        ax.plot(xs, ys, style, marker=marker, markersize=4, label=name, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def comparison_plot(cmp: dict, q: Question) -> str:
    """Before vs after per rate, the after bar carrying the bootstrap 95% CI of the paired difference (added to before)."""
    names = list(cmp["delta"])
    base = [cmp["base"][n] for n in names]
    tuned = [cmp["tuned"][n] for n in names]
    # The CI is of the difference; drawn around the after value it reads as "where after could be, given before".
    low = [cmp["tuned"][n] - (cmp["base"][n] + cmp["delta"][n]["ci95"][0]) for n in names]
    high = [(cmp["base"][n] + cmp["delta"][n]["ci95"][1]) - cmp["tuned"][n] for n in names]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], base, width=0.4, color="#8c959f", label=q.before)
    ax.bar([x + 0.2 for x in xs], tuned, width=0.4, color="#0969da", label=q.after,
           yerr=[[max(v, 0) for v in low], [max(v, 0) for v in high]], capsize=4, ecolor="#1f2328")
    ax.set_xticks(list(xs), [n.replace("_", " ") for n in names])
    ax.set_ylabel("rate")
    ax.set_title(f"{q.before} vs {q.after} on the same {cmp['n']} functions (error bars: 95% CI of the difference)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return _png(fig)


def _comparison_html(card: Scorecard) -> list[str]:
    out: list[str] = []
    for q in QUESTIONS:
        cmp = card.get(q.key)
        ident = q.key.replace("_", "-")
        if not cmp:
            why = (card.get("missing_evidence") or {}).get(q.key)
            out += [f"<h2>{_e(q.title)}</h2><p class='not-run'>Not compared: {_e(why)}.</p>"] if why else []
            continue
        rows = "".join(f"<tr><td>{_e(n)}</td><td>{cmp['base'][n]:.3f}</td><td>{cmp['tuned'][n]:.3f}</td><td>{d['value']:+.3f}</td>"
                       f"<td>[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]</td><td>{d['p_value']:.3g}</td><td>{_e(d['test'])}</td>"
                       f"<td>{_e(d['verdict'])}</td></tr>" for n, d in cmp["delta"].items())
        out += [f"<h2>{_e(q.title)}</h2><p id='{ident}-verdict'>{html.escape(cmp['sentence'])}</p>",
                f"<img class='plot' id='{ident}-plot' alt='{_e(q.before)} vs {_e(q.after)}' "
                f"src='data:image/png;base64,{comparison_plot(cmp, q)}'>",
                f"<table id='{ident}'><tr><th>rate</th><th>{_e(q.before)}</th><th>{_e(q.after)}</th><th>delta</th><th>95% CI</th>"
                f"<th>p</th><th>test</th><th>verdict</th></tr>{rows}</table>"]
    return out


def category_plot(card: Scorecard) -> str:
    """Points earned against the maximum for each rubric category, as base64 PNG."""
    cats = list(card["categories"])
    got = [card["categories"][c]["points"] for c in cats]
    top = [card["categories"][c]["max"] for c in cats]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.barh(cats, top, color="#d0d7de", label="max")
    ax.barh(cats, got, color="#0969da", label="earned")
    for y, (g, m) in enumerate(zip(got, top)):
        ax.text(m + 0.3, y, f"{g}/{m}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(top) + 4)
    ax.set_xlabel("points")
    ax.set_title(f"Rubric by category: {card['total']}/{card['max_total']} ({card['grade']})")
    ax.legend(loc="lower right")
    return _png(fig)


def _e(value) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, default=str))


PREFERRED = ("id", "parses", "compiles", "links", "passes", "tests_run", "mutation_score", "line_coverage",
             "branch_coverage", "clippy_warnings", "bleu4", "codebleu", "seconds", "failure", "reasons")


def _shown(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _sample_columns(samples: list[dict]) -> list[str]:
    """The evaluator's verdict fields worth a column: known ones first, then other scalars (schema-tolerant)."""
    present: list[str] = []
    for row in samples:
        present += [k for k, v in row.items() if k not in present and _shown(v)
                    and k not in ("function_code", "generated_tests", "reference_tests", "line")]
    known = [c for c in PREFERRED if c in present]
    return known + [c for c in present if c not in PREFERRED][: max(0, 16 - len(known))]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        value = "; ".join(value)
    text = "" if value is None else str(value)
    return html.escape(text if len(text) <= 300 else text[:297] + "...")


CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1200px}
h1{margin-bottom:4px} table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
td,th{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left;overflow-wrap:break-word}
th{background:#f6f8fa} .passed{color:#1a7f37;font-weight:600} .failed{color:#cf222e;font-weight:600}
.not-run{color:#6e7781;font-style:italic} .headline{font-size:20px} img{max-width:100%;border:1px solid #eee}
.neg{color:#cf222e} .pos{color:#1a7f37} pre{background:#f6f8fa;padding:8px;font-size:12px;overflow:auto}
"""

SCRIPT = """
function filterSamples(){
  var q=document.getElementById('sample-filter').value.toLowerCase();
  var rows=document.querySelectorAll('#samples tbody tr'); var shown=0;
  rows.forEach(function(r){var ok=r.textContent.toLowerCase().indexOf(q)>=0; r.style.display=ok?'':'none'; if(ok)shown++;});
  document.getElementById('sample-count').textContent=shown+' of '+rows.length+' samples';
}
window.addEventListener('load',function(){
  var imgs=document.querySelectorAll('img.plot'); var ok=0;
  imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
  document.body.setAttribute('data-plots-loaded',String(ok));
  if(document.getElementById('sample-filter'))filterSamples();
});
"""


def _status(s: str) -> str:
    return f'<span class="{s.replace(" ", "-")}">{html.escape(s)}</span>'


def render_html(card: Scorecard, samples: list[dict]) -> str:
    title = "reference tests (corpus)" if card.get("generator") == "reference" else "model"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Scorecard: {title}</title><style>{CSS}</style>"
             f"<script>{SCRIPT}</script></head><body data-plots-loaded='0'>",
             f"<h1>Scorecard: {html.escape(title)}</h1>",
             f"<p class='headline'><b>{card['total']} / {card['max_total']}</b>, grade <b>{card['grade']}</b> "
             f"(rubric {html.escape(card['rubric_version'])}; {card['counts']['passed']} passed, "
             f"{card['counts']['failed']} failed, {card['counts']['not run']} not run; items are all-or-nothing)</p>"]
    diff = card.get("baseline")
    if diff:
        cls = "neg" if diff["regression"] else "pos"
        parts.append(f"<p class='{cls}'>Against baseline {_e(diff['path'])}: total {diff['total_before']} &rarr; "
                     f"{diff['total_after']} ({diff['total_delta']:+d}){' REGRESSION' if diff['regression'] else ''}</p>")
    parts.append("<h2>Plots</h2>")
    loss = loss_plot(card.get("curves") or {})
    if loss:
        parts.append(f"<img class='plot' id='loss-plot' alt='training and validation loss' src='data:image/png;base64,{loss}'>")
    else:
        parts.append("<p class='not-run'>No loss curves: no training run was scored.</p>")
    parts.append(f"<img class='plot' id='category-plot' alt='rubric by category' src='data:image/png;base64,{category_plot(card)}'>")
    parts += _comparison_html(card)
    parts.append(f"<h2>Gates</h2><p id='adapter-verdict'>Adapter: <b>{_e(card['adapter'])}</b></p>"
                 "<table><tr><th>gate</th><th>requirement</th><th>status</th><th>reason</th></tr>")
    parts += [f"<tr><td>{g['id']}</td><td>{_e(g['requirement'])}</td><td>{_status(g['status'])}</td><td>{_e(g['reason'])}</td></tr>"
              for g in card["gates"]]
    parts.append("</table><h2>Items</h2><table><tr><th>item</th><th>category</th><th>status</th><th>points</th>"
                 "<th>threshold</th><th>evidence</th><th>falsifiers behind it</th><th>reason</th>"
                 + ("<th>delta</th>" if diff else "") + "</tr>")
    deltas = item_deltas(card)
    for i in card["items"]:
        behind = "<br>".join(f"{_e(f['nodeid'])}: {_status(f['status'])}" for f in i["falsifiers"]) or "-"
        row = (f"<tr><td>{i['id']}</td><td>{_e(i['category'])}</td><td>{_status(i['status'])}</td><td>{i['points']}/{i['max']}</td>"
               f"<td>{_e(i['threshold'])}</td><td>{_e(evidence_text(i['evidence']))}</td><td>{behind}</td><td>{_e(i['reason'])}</td>")
        if diff:
            d = deltas.get(i["id"])
            row += f"<td class='{'neg' if (d or 0) < 0 else 'pos'}'>{'' if d is None else f'{d:+d}'}</td>"
        parts.append(row + "</tr>")
    parts.append("</table>")
    cols = _sample_columns(samples)
    parts.append(f"<h2>Samples</h2><input id='sample-filter' placeholder='filter samples (any text)' oninput='filterSamples()' size='40'> "
                 f"<span id='sample-count'>{len(samples)} samples</span>")
    if samples:
        parts.append("<table id='samples'><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{_cell(s.get(c))}</td>" for c in cols) + "</tr>" for s in samples]
        parts.append("</tbody></table>")
    else:
        parts.append("<p class='not-run'>No per-sample evaluation records.</p><table id='samples'><tbody></tbody></table>")
    stages = card.get("stages") or []
    if stages:
        parts.append("<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>wall s</th><th>note</th></tr>")
        parts += [f"<tr><td>{_e(s['name'])}</td><td>{_e(s['status'])}</td><td>{s['seconds']:.1f}</td><td>{_e(s['reason'])}</td></tr>"
                  for s in stages]
        parts.append("</table>")
    provenance = json.dumps(card.get("provenance", {}), indent=2, sort_keys=True, default=str)
    parts.append("<h2>Provenance</h2><pre>" + html.escape(provenance) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)

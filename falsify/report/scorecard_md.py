"""scorecard.md: the scorecard as Markdown tables (for a terminal, a PR comment, the README)."""

from __future__ import annotations

import json

from falsify.report.comparison import QUESTIONS
from falsify.report.scorecard import Scorecard, item_deltas


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _short(value):
    """Hashes shortened for reading (scorecard.json keeps them whole)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "..."
    return value


def evidence_text(ev: dict) -> str:
    """An item's evidence values on one line (the HTML page shows the same text)."""
    return ", ".join(f"{k}={_short(v)}" for k, v in ev.items()) or "-"


def comparison_markdown(card: Scorecard) -> list[str]:
    """Each paired comparison the card has (base vs tuned; first candidate vs critic-reranked): one row per rate,
    the paired difference with its CI and p-value, then the verdict in words."""
    out: list[str] = []
    for q in QUESTIONS:
        cmp = card.get(q.key)
        if not cmp:
            why = (card.get("missing_evidence") or {}).get(q.key)
            out += [f"## {q.title}", "", f"Not compared: {why}.", ""] if why else []
            continue
        out += [f"## {q.title}", "", cmp["sentence"], "",
                f"| rate (n = {cmp['n']}) | {q.before} | {q.after} | delta | 95% CI | p | test | verdict |",
                "|---|---:|---:|---:|---|---:|---|---|"]
        for name, d in cmp["delta"].items():
            out.append(f"| {name} | {cmp['base'][name]:.3f} | {cmp['tuned'][name]:.3f} | {d['value']:+.3f} | "
                       f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] | {d['p_value']:.3g} | {d['test']} | {d['verdict']} |")
        out.append("")
    return out


def render_markdown(card: Scorecard) -> str:
    title = "Reference tests (corpus)" if card.get("generator") == "reference" else "Model"
    out = [f"# Scorecard: {title}", "",
           f"**{card['total']} / {card['max_total']}**, grade **{card['grade']}** "
           f"(rubric {card['rubric_version']}; {card['counts']['passed']} passed, {card['counts']['failed']} failed, "
           f"{card['counts']['not run']} not run). Items are all-or-nothing.", ""]
    diff = card.get("baseline")
    if diff:
        out += [f"Against baseline `{diff['path']}`: total {diff['total_before']} -> {diff['total_after']} "
                f"(**{diff['total_delta']:+d}**)" + (" **REGRESSION**" if diff["regression"] else ""), ""]
    out += comparison_markdown(card)
    out += ["## Gates", "", f"Adapter: **{card['adapter']}**.", "", "| gate | requirement | status | reason |", "|---|---|---|---|"]
    out += [f"| {g['id']} | {g['requirement']} | {g['status']} | {_cell(g['reason'])} |" for g in card["gates"]]
    out += ["", "## Categories", "", "| category | points | max |", "|---|---:|---:|"]
    out += [f"| {c} | {v['points']} | {v['max']} |" for c, v in card["categories"].items()]
    deltas = item_deltas(card)
    out += ["", "## Items", "", "| item | status | points | threshold | evidence | falsifiers behind it | reason |"
            + (" delta |" if diff else ""), "|---|---|---:|---|---|---|---|" + ("---:|" if diff else "")]
    for i in card["items"]:
        behind = ", ".join(f"{f['falsifier'] or f['nodeid']} {f['outcome']}" for f in i["falsifiers"]) or "-"
        row = (f"| {i['id']} | {i['status']} | {i['points']}/{i['max']} | {_cell(i['threshold'])} | "
               f"{_cell(evidence_text(i['evidence']))} | {_cell(behind)} | {_cell(i['reason'])} |")
        if diff:
            d = deltas.get(i["id"])
            row += f" {'' if d is None else f'{d:+d}'} |"
        out.append(row)
    prov = card.get("provenance", {})
    out += ["", "## Provenance", "", "```json", json.dumps(prov, indent=2, sort_keys=True, default=str), "```"]
    stages = card.get("stages") or []
    if stages:
        out += ["", "## Stages", "", "| stage | status | wall s | note |", "|---|---|---:|---|"]
        out += [f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {_cell(s['reason'])} |" for s in stages]
    return "\n".join(out) + "\n"

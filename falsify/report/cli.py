"""`python -m falsify.report`: run what is missing, score the 100-point rubric, write the scorecard.

    python -m falsify.report                        # default pipeline: train x2, generate, evaluate, falsifiers
    python -m falsify.report --experiment DIR       # reuse DIR (and DIR-repeat); run only what is missing
    python -m falsify.report --generator reference  # the corpus's own tests through the same evaluator
    python -m falsify.report --baseline old.json    # deltas; a lower total or a newly failing gate exits 1
    python -m falsify.report --standalone           # each function built alone, not inside its crate
    python -m falsify.report --critic DIR           # 4 sampled candidates a function, the critic keeps one

Samples are judged inside their real crate by default; --standalone judges each function in a
fresh crate of its own (the earlier behaviour).

The base model (no adapter) also writes tests for the same holdout functions (`--no-base`: it
does not), and the scorecard says whether the fine-tune helped, with CIs and paired tests. With
--critic, the tuned adapter samples --candidates tests per function and a test critic (a
classify experiment) keeps the one it rates best; those are the tests scored, and each
function's first candidate is evaluated too, so the scorecard also says whether reranking helped.

Writes scorecard.json, scorecard.md and scorecard.html into --out (reference: --out/reference;
--standalone: a `standalone/` folder below that),
all rendered first and then moved into place by rename, so a failure never leaves a partial
scorecard over a good one. A failing P-GATE rejects the adapter: adapter-rejected.json is written
next to it (and removed once every gate that ran passes). Exit codes: 0 scored, adapter accepted
(or no adapter: the reference generator); 1 regression against the baseline or a failed stage;
2 bad input (one line naming the file and field); 3 scored, adapter rejected.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from falsify.report import pipeline
from falsify.report.baseline import compare as compare_baseline
from falsify.report.baseline import load_baseline, regression_message
from falsify.report.comparison import FINE_TUNE, RERANK, Comparison, ComparisonError, Question, compare
from falsify.report.evidence import (
    Evidence,
    ReportError,
    experiment_paths,
    load_falsifiers,
    load_run,
    load_samples,
    load_summary,
    read_json,
)
from falsify.report.rubric import RUBRIC_VERSION, score
from falsify.report.scorecard import Scorecard, build_scorecard, scorecard_json, write_scorecard
from trainer.experiment import ExperimentPaths, sha256_of_dir
from trainer.rejection import clear_rejection, write_rejection

TIERS = ("tier1", "tier2", "tier3")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m falsify.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", type=Path, help="an existing experiment directory to reuse")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default reports/)")
    p.add_argument("--baseline", type=Path, help="an earlier scorecard.json to compare with")
    p.add_argument("--tiers", default="tier1,tier2", help="falsifier tiers to run, comma-separated ('' for none)")
    p.add_argument("--generator", choices=("model", "reference"), default="model",
                   help="score the model's generated tests, or the corpus's reference tests")
    p.add_argument("--limit", type=int, default=40, help="holdout functions to generate and evaluate (default 40)")
    p.add_argument("--standalone", action="store_true",
                   help="evaluate each function alone in a fresh crate (samples without 'crate'), not inside its crate")
    p.add_argument("--no-base", action="store_true",
                   help="do not generate with the base model (no base-vs-tuned comparison)")
    p.add_argument("--critic", type=Path,
                   help="a test critic (trainer critic): generate --candidates per function, keep the one it rates best, and "
                        "compare that with each function's first candidate")
    p.add_argument("--candidates", type=int, default=4, help="candidates per function with --critic (default 4)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of the candidates with --critic (default 0.8)")
    p.add_argument("--holdout", type=Path, default=pipeline.CORPUS / "holdout.jsonl", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _tiers(text: str) -> list[str]:
    tiers = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise ReportError(f"--tiers: unknown tier(s) {bad}; choose from {', '.join(TIERS)}")
    return tiers


def make_plan(args: argparse.Namespace) -> pipeline.Plan:
    if args.limit < 1:
        raise ReportError(f"--limit must be at least 1, got {args.limit}")
    if args.experiment is not None:
        experiment_paths(args.experiment)  # fail fast on a directory that is not an experiment
    rerank = None
    if args.critic is not None:
        if args.generator == "reference":
            raise ReportError("--critic reranks a model's candidates; the reference generator has none")
        if args.candidates < 2 or args.temperature <= 0:
            raise ReportError(f"--critic needs --candidates of at least 2 (got {args.candidates}) and a --temperature above 0 "
                              f"(got {args.temperature}): the critic chooses among different samples")
        if not ExperimentPaths(args.critic).config.is_file():
            raise ReportError(f"--critic {args.critic}: not an experiment directory (no config.yaml); train one with "
                              "`python -m trainer train --config smollm2-critic`")
        rerank = pipeline.Rerank(args.critic, args.candidates, args.temperature)
    if args.generator == "reference":
        return pipeline.reference_plan(args.experiment, limit=args.limit, holdout=args.holdout, standalone=args.standalone)
    return pipeline.model_plan(args.experiment, limit=args.limit, tiers=_tiers(args.tiers), holdout=args.holdout,
                               standalone=args.standalone, compare_base=not args.no_base, rerank=rerank)


# ---------------------------------------------------------------- evidence

def _why(path: Path, stage: str, results: dict[str, pipeline.StageResult]) -> str:
    r = results.get(stage)
    if r is not None and r.status in ("failed", "skipped"):
        return f"stage {stage} {r.status}: {r.reason}"
    return f"{path} not found"


def gather(plan: pipeline.Plan, results: dict[str, pipeline.StageResult]) -> Evidence:
    """Load every evidence file the plan names; a missing one becomes a "not run" reason."""
    ev = Evidence()
    if plan.summary.is_file():
        ev.summary = load_summary(plan.summary)
    else:
        ev.missing["summary"] = _why(plan.summary, "evaluate", results)
    if plan.generator == "reference":
        why = "the reference generator scores the corpus's own tests: no adapter is trained"
        ev.missing.update(experiment=why, repeat=why, generation="reference tests are written by people, not generated",
                          falsifiers="falsifiers test the trainer; not run for the reference generator")
        return ev
    for key, root, stage in (("experiment", plan.experiment, "train"), ("repeat", plan.repeat, "train-repeat")):
        metrics = ExperimentPaths(root).metrics
        if metrics.is_file():
            setattr(ev, key, load_run(root))
        else:
            ev.missing[key] = _why(metrics, stage, results)
    if plan.generation_summary.is_file():
        ev.generation = read_json(plan.generation_summary, "generation summary")
    else:
        ev.missing["generation"] = _why(plan.generation_summary, "generate", results)
    if plan.falsifiers is None:
        ev.missing["falsifiers"] = "no falsifier tiers selected (--tiers)"
    elif plan.falsifiers.is_file():
        ev.falsifiers = load_falsifiers(plan.falsifiers)
    else:
        ev.missing["falsifiers"] = _why(plan.falsifiers, "falsifiers", results)
    return ev


def paired_comparison(q: Question, before: Path | None, before_stage: str, after: Path, after_stage: str, ev: Evidence,
                      results: dict[str, pipeline.StageResult]) -> Comparison | None:
    """`q` over the functions both sides were evaluated on; None (and why, in ev.missing) when it cannot be made."""
    if before is None:
        return None
    sides = []
    for path, stage in ((before, before_stage), (after, after_stage)):
        if not path.is_file():
            ev.missing[q.key] = _why(path, stage, results)
            return None
        sides.append(load_samples(path, limit=100_000))
    try:
        return compare(*sides, question=q)
    except ComparisonError as exc:
        raise ReportError(f"{before} vs {after}: {exc}") from None


def base_comparison(plan: pipeline.Plan, ev: Evidence, results: dict[str, pipeline.StageResult]) -> Comparison | None:
    """Base vs tuned; None (and why, in ev.missing) when it cannot be made."""
    if plan.base_sample_results is None:
        ev.missing[FINE_TUNE.key] = ("the reference generator has no base model" if plan.generator == "reference"
                                     else "not asked for (--no-base)")
    return paired_comparison(FINE_TUNE, plan.base_sample_results, "evaluate-base", plan.sample_results, "evaluate", ev, results)


def judge_adapter(card: Scorecard, plan: pipeline.Plan, ev: Evidence, out: Path) -> str | None:
    """Write or clear adapter-rejected.json as the gates say; returns a line for the user."""
    if card["adapter"] == "not judged" or plan.experiment is None:
        return None
    paths = ExperimentPaths(plan.experiment)
    if card["adapter"] == "accepted":
        return f"adapter accepted (every gate that ran passed){'; earlier rejection removed' if clear_rejection(paths) else ''}"
    generation = ev.generation or {}
    adapter = Path(generation.get("checkpoint") or paths.best)
    reasons = [f"{g['id']} failed: {g['reason']}" for g in card["gates"] if g["passed"] is False]
    written = write_rejection(paths, adapter=adapter, adapter_sha256=generation.get("adapter_sha256") or sha256_of_dir(adapter),
                              reasons=reasons, scorecard=str(out / "scorecard.json"))
    return f"adapter REJECTED ({'; '.join(reasons)}); wrote {written}"


def render_all(card: Scorecard, samples: list[dict]) -> dict[str, str]:
    """The three files' text, all rendered before anything is written."""
    from falsify.report.scorecard_html import render_html  # matplotlib: imported only when a report is written
    from falsify.report.scorecard_md import render_markdown

    return {"scorecard.json": scorecard_json(card),
            "scorecard.md": render_markdown(card),
            "scorecard.html": render_html(card, samples)}


def report(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    out = args.out / "reference" if plan.generator == "reference" else args.out
    out = out / "standalone" if plan.standalone else out
    baseline = load_baseline(args.baseline, RUBRIC_VERSION) if args.baseline else None  # fail fast, before hours of work
    stages = pipeline.run_stages(plan.stages, out / "logs")
    results = {s.name: s for s in stages}
    ev = gather(plan, results)
    comparison = base_comparison(plan, ev, results)
    reranked = paired_comparison(RERANK, plan.first_sample_results, "evaluate-first", plan.sample_results, "evaluate", ev, results)
    card = build_scorecard(score(ev), plan, ev, stages, comparison, reranked)
    if baseline is not None:
        card["baseline"] = compare_baseline(card, baseline, str(args.baseline))
    samples = load_samples(plan.sample_results, limit=5000)
    written = write_scorecard(out, render_all(card, samples))

    print(f"score {card['total']}/{card['max_total']} grade {card['grade']} "
          f"({card['counts']['passed']} passed, {card['counts']['failed']} failed, {card['counts']['not run']} not run)")
    for g in card["gates"]:
        print(f"  {g['id']} {g['status']}: {g['reason']}")
    if comparison is not None:
        print(f"did the fine-tune help? {comparison['verdict']}: {comparison['sentence']}")
    if reranked is not None:
        print(f"did critic reranking help? {reranked['verdict']}: {reranked['sentence']}")
    verdict = judge_adapter(card, plan, ev, out)
    if verdict:
        print(verdict)
    print("wrote " + ", ".join(str(p) for p in written))
    code = 3 if card["adapter"] == "rejected" else 0
    failed = [s for s in stages if s.status == "failed"]
    if failed:
        print("stage(s) failed: " + "; ".join(f"{s.name} ({s.reason}; log {s.log})" for s in failed), file=sys.stderr)
        code = 1
    if baseline is not None and card["baseline"]["regression"]:
        print(regression_message(card["baseline"]), file=sys.stderr)
        code = 1
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return report(args)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no scorecard written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

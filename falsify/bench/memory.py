"""`python -m falsify.bench memory`: peak RSS of a short real-model training run, loss chunked vs not.

trainer.lm_loss.chunked_head_loss computes the LM head's loss a chunk of rows at a time, so a 49k
vocabulary's logits are never held whole. This runs the same short training (default: the
smollm2-lora config, a few steps) in fresh processes, alternating: `chunked` as shipped, and
`whole` with the chunk made larger than any batch (the path before chunking). Each process
reports its peak RSS (getrusage) and the trainer's tokens/s and final training loss; the report
gives the medians, their ratios with bootstrap CIs, and whether the losses agree.
Writes reports/bench/memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from .pairs import alternate, ratio_summary, training_run_options, write_results

VARIANTS = ("chunked", "whole")


def worker(spec: dict) -> dict:
    """One training run in this process; `whole` turns chunking off by making one chunk hold every row."""
    from trainer import lm_loss, train
    from trainer.config import load_config

    if spec["variant"] == "whole":
        lm_loss.LOGIT_CHUNK_ELEMENTS = 2**62
    overrides = [f"training.max_steps={spec['steps']}", f"training.eval_steps={spec['steps']}",
                 f"training.save_steps={spec['steps']}", "data.max_validation_samples=4"]
    metrics = train.train(load_config(spec["config"], overrides), Path(spec["out"]), overwrite=True)
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tokens_per_s": metrics["tokens_per_s_median"], "final_train_loss": metrics["final_train_loss"]}


def one_run(spec: dict, work: Path) -> dict:
    spec_file = work / f"{spec['variant']}.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "falsify.bench", "memory", "--worker", str(spec_file)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory bench worker {spec['variant']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = training_run_options("memory", __doc__, config="smollm2-lora", steps=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    runs, load = alternate(
        VARIANTS, args.pairs,
        lambda variant, pair: one_run({"variant": variant, "config": args.config, "steps": args.steps,
                                       "out": str(work / f"{variant}-{pair}")}, work),
        lambda r: f"peak RSS {r['peak_rss_mb']:.0f} MB, {r['tokens_per_s']:.1f} tok/s")
    rss = ratio_summary([r["peak_rss_mb"] for r in runs["chunked"]], [r["peak_rss_mb"] for r in runs["whole"]])
    speed = ratio_summary([r["tokens_per_s"] for r in runs["chunked"]], [r["tokens_per_s"] for r in runs["whole"]])
    loss_rel = abs(runs["chunked"][0]["final_train_loss"] - runs["whole"][0]["final_train_loss"]) / runs["whole"][0]["final_train_loss"]
    result = {"config": args.config, "steps": args.steps, "load": load, "runs": runs, "peak_rss": rss, "speed": speed,
              "final_train_loss_relative_difference": loss_rel,
              "command": " ".join(["python -m falsify.bench memory", *(argv if argv is not None else sys.argv[1:])])}
    md = "\n".join([
        f"# Peak memory: the LM head's loss chunked vs whole ({args.config}, {args.steps} steps, {args.pairs} alternating pairs)",
        "", f"Load average {min(load):.1f}-{max(load):.1f}.", "",
        "| | chunked | whole |", "|---|---|---|",
        f"| peak RSS MB (median) | {rss['median_a']:.0f} | {rss['median_b']:.0f} |",
        f"| training tokens/s (median) | {speed['median_a']:.1f} | {speed['median_b']:.1f} |", "",
        f"Peak RSS chunked/whole: **{rss['ratio']:.2f}** (95% CI {rss['ci95'][0]:.2f}-{rss['ci95'][1]:.2f}); speed chunked/whole "
        f"{speed['ratio']:.2f}x (CI {speed['ci95'][0]:.2f}-{speed['ci95'][1]:.2f}); final training loss differs by {loss_rel:.1e} "
        "(relative).", "", "```", result["command"], "```", ""])
    write_results(Path(args.out), "memory", result, md)
    return 0

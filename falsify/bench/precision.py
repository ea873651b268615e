"""`python -m falsify.bench precision`: the same short training run in fp32 and in bf16, alternating.

It answers two questions for a packaged config (default smollm2-qlora) on this machine:
is bf16 compute faster (training tokens/s, ratio of medians over alternating pairs, bootstrap
CI), and does it train the same (per-step training loss and the final validation loss of the
first bf16 run against the first fp32 run, relative difference, against LOSS_RTOL)?

"bf16" here is `training.precision: bf16-where-native`: on a CPU without bf16 instructions it
computes in fp32, and the report says so (`compute_dtype` of each run) instead of comparing
fp32 with itself under another name. Writes reports/bench/precision.{json,md}.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from trainer.experiment import ExperimentPaths
from trainer.monitor.store import MetricStore

from .pairs import alternate, max_relative_difference, ratio_summary, training_run_options, write_results

LOSS_RTOL = 0.02  # bf16 keeps ~3 significant digits; a loss curve within 2% per step trains the same
VARIANTS = ("fp32", "bf16-where-native")


def one_run(config: str, precision: str, steps: int, out: Path) -> dict:
    """A trainer subprocess (its own process: its own threads and memory), then what it measured."""
    cmd = [sys.executable, "-m", "trainer", "train", "--config", config, "--output", str(out), "--overwrite",
           "--set", f"training.max_steps={steps}", "--set", f"training.eval_steps={steps}",
           "--set", f"training.save_steps={steps}", "--set", f"training.precision={precision}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training run {out} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    store = MetricStore(ExperimentPaths(out).store)
    try:
        losses = [loss for _, loss in store.loss_curve()]
    finally:
        store.close()
    return {"precision": precision, "compute_dtype": metrics["compute_dtype"], "tokens_per_s": metrics["tokens_per_s_median"],
            "train_seconds": metrics["train_seconds"], "losses": losses, "initial_val_loss": metrics["initial_val_loss"],
            "final_val_loss": metrics["final_val_loss"]}


def markdown(result: dict) -> str:
    r, agree, first = result["speed"], result["agreement"], {k: v[0] for k, v in result["runs"].items()}
    lines = [f"# bf16 vs fp32 compute: {result['config']}, {result['steps']} steps, {r['pairs']} alternating pairs", "",
             f"Machine: {result['machine']}. Load average before and between runs: {', '.join(f'{x:.1f}' for x in result['load'])}.", "",
             "| | fp32 | bf16-where-native |", "|---|---|---|",
             f"| compute dtype | {first['fp32']['compute_dtype']} | {first['bf16-where-native']['compute_dtype']} |",
             f"| training tokens/s (median) | {r['median_b']:.1f} | {r['median_a']:.1f} |",
             f"| final validation loss (first runs) | {agree['final_val_loss']['fp32']:.4f} | {agree['final_val_loss']['bf16']:.4f} |", "",
             f"Speed-up bf16/fp32: **{r['ratio']:.2f}x** (95% CI {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}; per pair "
             f"{', '.join(f'{x:.2f}' for x in r['pair_ratios'])}).", "",
             f"Training loss, per step, max relative difference: {agree['train_loss_max_rel']:.4f}; final validation loss: "
             f"{agree['val_loss_rel']:.4f} (tolerance {LOSS_RTOL}): **{'within tolerance' if agree['within'] else 'OUTSIDE tolerance'}**.",
             f"Same-seed runs bit-identical (loss curve and final validation loss): "
             f"{', '.join(f'{k} {v}' for k, v in agree['same_seed_bit_identical'].items())}.",
             "", "```", result["command"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = training_run_options("precision", __doc__, config="smollm2-qlora", steps=4).parse_args(argv)
    work, out = Path(args.workdir), Path(args.out)
    runs, load = alternate(VARIANTS, args.pairs,
                           lambda variant, pair: one_run(args.config, variant, args.steps, work / f"{variant}-{pair}"),
                           lambda r: f"{r['tokens_per_s']:.1f} tok/s ({r['compute_dtype']})")
    fp32, bf16 = runs["fp32"][0], runs["bf16-where-native"][0]
    agreement = {"train_loss_max_rel": max_relative_difference(bf16["losses"], fp32["losses"]),
                 "val_loss_rel": abs(bf16["final_val_loss"] - fp32["final_val_loss"]) / fp32["final_val_loss"],
                 "final_val_loss": {"fp32": fp32["final_val_loss"], "bf16": bf16["final_val_loss"]}, "rtol": LOSS_RTOL}
    agreement["within"] = agreement["train_loss_max_rel"] <= LOSS_RTOL and agreement["val_loss_rel"] <= LOSS_RTOL
    # the scorecard's reproducibility items need bit-identical same-seed runs: does each precision give them?
    agreement["same_seed_bit_identical"] = {v: all(r["losses"] == rs[0]["losses"] and r["final_val_loss"] == rs[0]["final_val_loss"]
                                                   for r in rs[1:]) if len(rs) > 1 else None for v, rs in runs.items()}
    result = {"config": args.config, "steps": args.steps, "machine": f"{platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads", "load": load, "runs": runs, "agreement": agreement,
              "speed": ratio_summary([r["tokens_per_s"] for r in runs["bf16-where-native"]], [r["tokens_per_s"] for r in runs["fp32"]]),
              "command": " ".join(["python -m falsify.bench precision", *(argv if argv is not None else sys.argv[1:])])}
    write_results(out, "precision", result, markdown(result))
    return 0

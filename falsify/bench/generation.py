"""`python -m falsify.bench generation`: our batched greedy generation against transformers' `generate` at batch 1.

Both sides run the same model (default: the prepared SmolLM2-135M-Instruct, no adapter), the same
prompts (the first `--functions` holdout records, rendered as `trainer generate` renders them), the
same stopping (end of turn or the first closed code block) and the same `max_new_tokens`. A is
`trainer.generate.generate_batch` over batches of `--batch-size` (left padding, KV cache); B is one
`generate` call per prompt. Throughput is total new tokens / total seconds over the whole set;
pairs alternate A B, B A, ... and the report gives the ratio of medians with its bootstrap CI, and
how many outputs are token-identical between the two (left padding may move a greedy tie).
Writes reports/bench/generation.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from trainer.config import GenerationConfig

from .pairs import alternate, ratio_summary, write_results


def load_model(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.pretrained import resolve_model_path

    path = resolve_model_path(name, key="--model")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tokenizer


def prompts_of(model, tokenizer, holdout: Path, n: int, max_new_tokens: int) -> list[str]:
    from trainer.generate import fitting_prompt, read_functions

    return [fitting_prompt(model, tokenizer, row["prompt_code"], "", max_new_tokens) for row in read_functions(holdout)[:n]]


def run_side(model, tokenizer, prompts: list[str], gen: GenerationConfig, batch_size: int) -> dict:
    from trainer.generate import generate_batch

    texts, tokens, seconds = [], 0, 0.0
    for start in range(0, len(prompts), batch_size):
        out, counts, took = generate_batch(model, tokenizer, prompts[start:start + batch_size], gen, torch.device("cpu"))
        texts += out
        tokens += sum(counts)
        seconds += took
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "texts": texts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m falsify.bench generation", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a prepared model name or a model directory")
    ap.add_argument("--holdout", default="experiments/corpus/holdout.jsonl")
    ap.add_argument("--functions", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", default="reports/bench")
    args = ap.parse_args(argv)
    model, tokenizer = load_model(args.model)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    prompts = prompts_of(model, tokenizer, Path(args.holdout), args.functions, args.max_new_tokens)
    sides = {"ours": args.batch_size, "generate-batch-1": 1}
    run_side(model, tokenizer, prompts[:1], GenerationConfig(max_new_tokens=4), 1)  # warm-up: first-call costs count for neither
    runs, load = alternate(tuple(sides), args.pairs, lambda name, pair: run_side(model, tokenizer, prompts, gen, sides[name]),
                           lambda r: f"{r['tokens_per_s']:.1f} tok/s ({r['seconds']:.0f} s)")
    same = sum(a == b for a, b in zip(runs["ours"][0]["texts"], runs["generate-batch-1"][0]["texts"]))
    speed = ratio_summary([r["tokens_per_s"] for r in runs["ours"]], [r["tokens_per_s"] for r in runs["generate-batch-1"]])
    result = {"model": args.model, "functions": len(prompts), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
              "threads": torch.get_num_threads(), "load": load, "speed": speed, "identical_outputs": same,
              "runs": {k: [{x: v for x, v in r.items() if x != "texts"} for r in rs] for k, rs in runs.items()},
              "command": " ".join(["python -m falsify.bench generation", *(argv if argv is not None else sys.argv[1:])])}
    md = "\n".join([
        f"# Generation: ours (batch {args.batch_size}, KV cache) vs transformers `generate` at batch 1", "",
        f"{args.model}, {len(prompts)} holdout prompts, greedy, max_new_tokens {args.max_new_tokens}, CPU, "
        f"{torch.get_num_threads()} threads; {args.pairs} alternating pairs; load average {min(load):.1f}-{max(load):.1f}.", "",
        "| | ours | generate, batch 1 |", "|---|---|---|",
        f"| new tokens/s (median) | {speed['median_a']:.1f} | {speed['median_b']:.1f} |", "",
        f"Speed-up: **{speed['ratio']:.2f}x** (95% CI {speed['ci95'][0]:.2f}-{speed['ci95'][1]:.2f}; per pair "
        f"{', '.join(f'{x:.2f}' for x in speed['pair_ratios'])}). Token-identical outputs: {same}/{len(prompts)}.", "",
        "```", result["command"], "```", ""])
    write_results(Path(args.out), "generation", result, md)
    return 0

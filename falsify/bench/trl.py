"""`python -m falsify.bench trl [--quick]`: our train_step loop against TRL's SFTTrainer, same work.

Benchmarks are not tests: this prints and writes numbers (reports/bench/results.{json,md}),
it asserts nothing about speed. What is held equal between the two trainers, per row:

- the model: both load the same saved base directory through trainer.models
  (`load_for_training`: fp32 base / NF4 base, the same peft LoRA config and, seeded
  alike, the same LoRA initialisation);
- the data: the same encoded examples (assistant-only labels) in the same order
  (TRL gets them pre-tokenized, with a sequential sampler); same micro-batch, right
  padding to the longest in the batch, no gradient accumulation;
- the optimizer and schedule: the same torch AdamW (betas 0.9/0.999, wd 0.01) and our
  cosine LambdaLR, handed to TRL through `optimizers=`; clipping at 1.0;
- precision: fp32 on CPU; bf16 autocast (ours) / `bf16=True` (TRL) on CUDA. The `-bf16` rows run each
  trainer at its own default on a CPU with native bf16 (AVX512-BF16 or AMX): ours
  `training.precision: bf16-where-native` (the smollm2 configs' setting), TRL `bf16=True` (SFTConfig's
  default); both then autocast to bf16, and their loss curves are held to the precision bench's 2%;
- no gradient checkpointing on either side (TRL's default is on; ours has none).
LoRA dropout is 0 in the bench so the two loss curves can be compared step by step (the
random dropout masks would otherwise differ between two different loops).

Each run is its own subprocess (`--worker`, falsify/bench/trl_worker.py), so peak RSS and
VRAM are per run; the runs alternate A B A B ... for `--pairs` pairs. Tokens/s counts
non-padding tokens over the steps after the first (warm-up) step, data collation included,
on both sides.

MFU: the machine's peak is measured with torch GEMMs at the model's shapes and dtype.
Model FLOPs per token (the convention of the PaLM paper, appendix B):
    F = 6 * N_matmul + 12 * n_layers * seq * d_model
with N_matmul the weights of every matmul the gradient flows through (all decoder
linears, the LM head, and the LoRA adapters) and seq the mean row length. A frozen
weight needs no weight gradient, so the work actually required is lower:
    F_frozen_aware = 4 * N_frozen + 6 * N_lora + 12 * n_layers * seq * d_model
and both MFUs are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainer.errors import TrainerError
from trainer.files import write_atomic

from .pairs import busy_warning, load_average, max_relative_difference, ratio_summary

DEFAULT_DATA = "experiments/corpus/train.jsonl"
OUT = Path("reports/bench")
LOSS_RTOL = {"fp32": 1e-3, "bf16": 2e-2}  # per-step relative agreement of the two loss curves (bf16: the precision bench's)


@dataclass
class Row:
    name: str
    preset: str  # tiny | qwen2.5-0.5b (random init, built from trainer.models.PRESETS) | a prepared real model (trainer.pretrained)
    mode: str  # lora | qlora
    layers: int | None = None  # reduced depth (None: the preset's)
    max_seq_len: int = 256
    batch_size: int = 8
    steps: int = 8
    compare: str = "trl"  # trl: ours vs TRL; packing: ours unpacked vs ours packed
    precision: str = "fp32"  # fp32 | bf16 (both trainers autocast to bf16; needs a CPU with native bf16, or CUDA)
    shape: dict = field(default_factory=dict)

    @property
    def variants(self) -> tuple[str, str]:
        """The two runs of a pair, in the order they alternate."""
        return ("ours", "trl") if self.compare == "trl" else ("ours-unpacked", "ours-packed")

    @property
    def ratio_of(self) -> tuple[str, str]:
        """(numerator, denominator) of the reported ratio: ours over TRL, packed over unpacked."""
        return ("ours", "trl") if self.compare == "trl" else ("ours-packed", "ours-unpacked")

    def spec(self, base: Path, data: Path, device: str, **extra) -> dict:
        """What a worker process needs to run this row (see run_worker)."""
        return {"base": str(base), "mode": self.mode, "data": str(data), "max_seq_len": self.max_seq_len,
                "batch_size": self.batch_size, "steps": self.steps, "seed": 0, "device": device,
                "n_examples": self.batch_size * self.steps, "precision": self.precision, **extra}


def rows(quick: bool) -> list[Row]:
    s = 4 if quick else 8
    big = 3 if quick else 5
    return [
        Row("tiny-lora", "tiny", "lora", steps=s),
        Row("tiny-qlora", "tiny", "qlora", steps=s),
        Row("qwen0.5b-2layers-lora", "qwen2.5-0.5b", "lora", layers=2, batch_size=2, steps=big),
        Row("qwen0.5b-2layers-qlora", "qwen2.5-0.5b", "qlora", layers=2, batch_size=2, steps=big),
        Row("tiny-lora-packing", "tiny", "lora", max_seq_len=512, batch_size=4, steps=s, compare="packing"),
        # real weights (python -m trainer model prepare smollm2-135m-instruct), the shape of the smollm2-* configs' batches
        Row("smollm2-lora", "smollm2-135m-instruct", "lora", batch_size=4, steps=big),
        Row("smollm2-qlora", "smollm2-135m-instruct", "qlora", batch_size=4, steps=big),
        # the same, each trainer at its own default precision on a CPU with bf16 instructions (ours bf16-where-native, TRL bf16=True)
        Row("smollm2-lora-bf16", "smollm2-135m-instruct", "lora", batch_size=4, steps=big, precision="bf16"),
        Row("smollm2-qlora-bf16", "smollm2-135m-instruct", "qlora", batch_size=4, steps=big, precision="bf16"),
    ]


def build_base(row: Row, records: list[dict], root: Path) -> Path:
    """A saved base model directory (random init, seed 0) + its corpus tokenizer, built once per shape;
    for a real model, its prepared directory (a one-line error when it is not prepared)."""
    from transformers import AutoModelForCausalLM

    from trainer.models import PRESETS, preset_config
    from trainer.pretrained import KNOWN, resolve_model_path
    from trainer.tokenizer import train_tokenizer

    if row.preset in KNOWN:
        return resolve_model_path(row.preset, key=f"bench row {row.name}")

    key = f"{row.preset}-{row.layers or 'full'}"
    path = root / "bases" / key
    if (path / "config.json").is_file():
        return path
    spec = PRESETS[row.preset]
    tokenizer = train_tokenizer(records, spec["bpe_vocab"], spec["vocab"])
    overrides = {"num_hidden_layers": row.layers} if row.layers else {}
    config = preset_config(row.preset, vocab_size=len(tokenizer), **overrides)
    config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ------------------------------------------------------------------ the machine's peak


def measure_peak(shapes: list[tuple[int, int, int]], device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> dict:
    """Best GEMM throughput over the model's matmul shapes (m x k @ k x n), FLOP/s."""
    results = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        reps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            a @ b
            reps += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
        results[f"{m}x{k}x{n}"] = 2 * m * k * n * reps / (time.perf_counter() - started)
    return {"peak_flops": max(results.values()), "by_shape": results, "dtype": str(dtype).replace("torch.", "")}


def gemm_shapes(base: Path, tokens: int) -> list[tuple[int, int, int]]:
    config = json.loads((base / "config.json").read_text())
    d, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    return [(tokens, d, d), (tokens, d, ff), (tokens, ff, d), (tokens, d, v)]


# ------------------------------------------------------------------ driver


def run_worker(spec: dict, workdir: Path) -> dict:
    """One run in a fresh process (its own peak RSS); the result comes back as JSON."""
    spec_file = workdir / f"spec-{spec['label']}.json"
    result_file = workdir / f"result-{spec['label']}.json"
    spec_file.write_text(json.dumps({**spec, "result": str(result_file), "workdir": str(workdir / "trl-out")}))
    done = subprocess.run([sys.executable, "-m", "falsify.bench", "trl", "--worker", str(spec_file)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {spec['label']} failed:\n{done.stderr[-4000:]}")
    return json.loads(result_file.read_text())


def summarize(row: Row, runs: dict[str, list[dict]], peak: dict, load: list[float]) -> dict:
    a_name, b_name = row.ratio_of
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    best = {k: statistics.median(r["tokens_per_s_best_step"] for r in v) for k, v in runs.items()}
    ratio = ratio_summary([r["tokens_per_s"] for r in runs[a_name]], [r["tokens_per_s"] for r in runs[b_name]])
    pair_ratios = ratio["pair_ratios"]
    out = {"row": asdict(row), "runs": runs, "median_tokens_per_s": med, "median_best_step_tokens_per_s": best,
           "pair_ratios": pair_ratios, "median_pair_ratio": statistics.median(pair_ratios), "ratio": ratio["ratio"],
           "ratio_ci95": ratio["ci95"], "ratio_meaning": f"{a_name} / {b_name}", "load": load,
           "peak_rss_mb": {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}, "peak": peak}
    for k, v in runs.items():
        f = v[0]
        out.setdefault("mfu", {})[k] = med[k] * f["flops_per_token"] / peak["peak_flops"]
        out.setdefault("mfu_frozen_aware", {})[k] = med[k] * f["flops_per_token_frozen_aware"] / peak["peak_flops"]
        if "peak_vram_mb" in f:
            out.setdefault("peak_vram_mb", {})[k] = max(r["peak_vram_mb"] for r in v)
    if row.compare == "trl":
        la, lb = runs["ours"][0]["losses"], runs["trl"][0]["losses"]
        rel = max_relative_difference(la, lb)
        out["loss_curves"] = {"ours": la, "trl": lb, "max_relative_difference": rel, "rtol": LOSS_RTOL[row.precision],
                              "agree": rel <= LOSS_RTOL[row.precision]}
    ours = runs["ours" if row.compare == "trl" else "ours-unpacked"]
    out["generation_tokens_per_s"] = statistics.median(r["generation_tokens_per_s"] for r in ours if r.get("generation_tokens_per_s"))
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = ["# Benchmark: our train_step loop vs TRL SFTTrainer", "",
             f"Device: {env['device']} ({env['cpu']}, {env['threads']} threads); torch {env['torch']}, "
             f"transformers {env['transformers']}, peft {env['peft']}, trl {env.get('trl')}. Data: {env['data']} "
             f"({env['data_sha256'][:12]}). {results['pairs']} alternating pairs per row; medians.", "",
             "| row | tokens/s A | tokens/s B | ratio A/B (of medians, bootstrap 95% CI; per pair) | best-step ratio "
             "| loss curves (max rel. diff) "
             "| peak RSS MB A / B | MFU A / B | MFU frozen-aware A / B |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        a, b = r["ratio_meaning"].split(" / ")
        curves = r.get("loss_curves")
        agree = (f"{'agree' if curves['agree'] else 'DIFFER'}: {curves['max_relative_difference']:.1e} (tolerance {curves['rtol']:g})"
                 if curves else "n/a (packed rows: other layout)")
        tokens, best = r["median_tokens_per_s"], r["median_best_step_tokens_per_s"]
        lines.append(f"| {r['row']['name']} (A={a}, B={b}) | {tokens[a]:.0f} | {tokens[b]:.0f} | "
                     f"{r['ratio']:.2f}x (CI {r['ratio_ci95'][0]:.2f}-{r['ratio_ci95'][1]:.2f}); "
                     f"{' '.join(f'{x:.2f}' for x in r['pair_ratios'])} | {best[a] / best[b]:.2f}x | {agree} | "
                     f"{r['peak_rss_mb'][a]:.0f} / {r['peak_rss_mb'][b]:.0f} | {r['mfu'][a]:.1%} / {r['mfu'][b]:.1%} | "
                     f"{r['mfu_frozen_aware'][a]:.1%} / {r['mfu_frozen_aware'][b]:.1%} |")
    lines += ["", "Load average (1 min) before and between runs: " + "; ".join(
        f"{r['row']['name']} {min(r['load']):.1f}-{max(r['load']):.1f}" for r in results["rows"] if r.get("load"))
        + f" (on {os.cpu_count()} cores)."]
    lines += ["", f"Peak GEMM (measured, {results['rows'][0]['peak']['dtype']}): "
              + ", ".join(f"{r['row']['name']}: {r['peak']['peak_flops'] / 1e9:.1f} GFLOP/s" for r in results["rows"]), ""]
    gen = ", ".join(f"{r['row']['name']}: {r['generation_tokens_per_s']:.0f}" for r in results["rows"] if r.get("generation_tokens_per_s"))
    lines += [f"Greedy generation, batch 1, 64 new tokens (ours, tokens/s): {gen}", ""]
    for prof in results.get("profiles", []):
        how = "3 steps after 2 warm-up steps" if prof.get("trainer", "ours") == "ours" else "its whole 3-step train(), first step included"
        lines += [f"## Where the time goes ({prof['row']}, {prof.get('trainer', 'ours')}, torch.profiler over {how}; per step)", "",
                  "| op | self ms | share | calls |", "|---|---|---|---|"]
        lines += [f"| `{p['op']}` | {p['self_ms']:.1f} | {p['share']:.1%} | {p['calls']} |" for p in prof["top_ops"]]
        lines.append("")
    commands = [c for c in results.get("commands", [results["command"]]) if c]
    lines += ["", "## Reproduce", "", "```", *commands, "```", ""]
    if len(commands) > 1:
        lines += ["(later commands ran with `--merge`: their rows replaced those; each row's `measured_at` in results.json says when)", ""]
    return "\n".join(lines)


def environment(device: torch.device, data: Path) -> dict:
    import hashlib
    from importlib import metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    env = {"device": str(device), "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "python": platform.python_version(), "data": str(data), "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "trl", "datasets", "accelerate"):
        env[pkg] = version(pkg)
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falsify.bench trl", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps per run (still >= 3 pairs)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--data", default=DEFAULT_DATA, help="training JSONL (corpus records)")
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--workdir", default="experiments/bench")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other rows of an existing results.json (rows measured here replace theirs; each row says when)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.worker:
            spec = json.loads(Path(args.worker).read_text())
            from falsify.bench.trl_worker import run_ours, run_trl

            result = (run_trl if spec["trainer"] == "trl" else run_ours)(spec)
            Path(spec["result"]).write_text(json.dumps(result))
            return 0
        return drive(args, argv)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def drive(args, argv) -> int:
    """Every selected row: its alternating pairs, its summary; then a profiled run of each TRL row; then the reports."""
    from trainer.data import load_jsonl
    from trainer.runtime import resolve_device

    device, _ = resolve_device(args.device)  # --device cuda without CUDA: a one-line error
    if args.pairs < 3:
        raise TrainerError(f"--pairs expects an integer >= 3 (alternating A B pairs), got {args.pairs}")
    data = Path(args.data)
    if not data.is_file():
        raise TrainerError(f"bench data not found: {data} (build the corpus with `make corpus`, or pass --data FILE)")
    selected = select_rows(args.rows, args.quick, args.device)
    workdir, out = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    records = load_jsonl(data)
    results = {"environment": environment(device, data), "pairs": args.pairs, "loss_rtol": LOSS_RTOL, "rows": [],
               "command": " ".join(["python -m falsify.bench trl", *(argv if argv is not None else sys.argv[1:])])}
    for row in selected:
        base = build_base(row, records, workdir)
        runs: dict[str, list[dict]] = {n: [] for n in row.variants}
        load = [load_average()]  # before the row and after each run
        for pair in range(args.pairs):
            for name in row.variants:
                if warning := busy_warning(f"before {row.name} {name} run {pair + 1}"):
                    print(warning, flush=True)
                spec = row.spec(base, data, args.device, trainer="trl" if name == "trl" else "ours", packing=name == "ours-packed",
                                label=f"{row.name}-{name}-{pair}")
                runs[name].append(run_worker(spec, workdir))
                load.append(load_average())
                print(f"{row.name} pair {pair + 1}/{args.pairs} {name}: {runs[name][-1]['tokens_per_s']:.0f} tok/s", flush=True)
        dtype = torch.bfloat16 if device.type == "cuda" or row.precision == "bf16" else torch.float32
        summary = summarize(row, runs, measure_peak(gemm_shapes(base, row.batch_size * row.max_seq_len), device, dtype), load)
        summary["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results["rows"].append(summary)
        print(f"{row.name}: ratio {summary['ratio']:.2f} ({summary['ratio_meaning']})", flush=True)
    results["profiles"] = []
    for prof_row in (r for r in selected if r.compare == "trl"):  # where the time goes, row by row, on both sides
        base = build_base(prof_row, records, workdir)
        for trainer in ("ours", "trl"):  # ours: 2 warm-up steps, then 3 profiled; TRL: its 3-step train() profiled whole
            spec = prof_row.spec(base, data, args.device, steps=2 if trainer == "ours" else 3, trainer=trainer,
                                 n_examples=prof_row.batch_size * 6, profile_steps=3, label=f"{prof_row.name}-{trainer}-profile")
            results["profiles"].append({"row": prof_row.name, "trainer": trainer, "top_ops": run_worker(spec, workdir)["profile"]})
    if args.merge:
        results = merged(out / "results.json", results)
    write_atomic(out / "results.json", json.dumps(results, indent=1))
    write_atomic(out / "results.md", markdown(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def merged(path: Path, new: dict) -> dict:
    """`new` plus the rows (and their profiles) of the results at `path` that `new` did not measure, in the order of rows()."""
    if not path.is_file():
        return new
    old = json.loads(path.read_text())
    names = {r["row"]["name"] for r in new["rows"]}
    order = [r.name for r in rows(False)]
    keep = [r for r in old.get("rows", []) if r["row"]["name"] not in names]
    new["rows"] = sorted(keep + new["rows"], key=lambda r: order.index(r["row"]["name"]) if r["row"]["name"] in order else len(order))
    new["profiles"] = [p for p in old.get("profiles", []) if p["row"] not in names] + new["profiles"]
    new["profiles"].sort(key=lambda p: order.index(p["row"]) if p["row"] in order else len(order))
    new["commands"] = [*old.get("commands", [old.get("command")]), new["command"]]
    return new


def select_rows(names: str | None, quick: bool, device: str = "cpu") -> list[Row]:
    """The rows named by --rows (all by default); TRL must be importable when one compares with it."""
    selected = rows(quick)
    if names:
        wanted = names.split(",")
        unknown = sorted(set(wanted) - {r.name for r in selected})
        if unknown:
            raise TrainerError(f"--rows: unknown row(s) {unknown} (known: {', '.join(r.name for r in selected)})")
        selected = [r for r in selected if r.name in wanted]
    from trainer.runtime import cpu_has_native_bf16

    for row in selected:
        if row.precision == "bf16" and device == "cpu" and not cpu_has_native_bf16():
            raise TrainerError(f"bench row {row.name} compares bf16 compute; this CPU has no native bf16 (avx512_bf16 / amx_bf16 in "
                               "/proc/cpuinfo), so it would measure emulation: leave it out with --rows")
    if any(r.compare == "trl" for r in selected):
        try:
            import trl  # noqa: F401
        except ImportError:
            raise TrainerError("TRL is not installed: pip install -e '.[bench]' (it stays an optional extra)") from None
    return selected


if __name__ == "__main__":
    sys.exit(main())

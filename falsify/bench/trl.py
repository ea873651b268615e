"""`python -m falsify.bench.trl [--quick]`: our train_step loop against TRL's SFTTrainer, same work.

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
- precision: fp32 on CPU; bf16 autocast (ours) / `bf16=True` (TRL) on CUDA;
- no gradient checkpointing on either side (TRL's default is on; ours has none).
LoRA dropout is 0 in the bench so the two loss curves can be compared step by step (the
random dropout masks would otherwise differ between two different loops).

Each run is its own subprocess (`--worker`), so peak RSS and VRAM are per run; the runs
alternate A B A B ... for `--pairs` pairs. Tokens/s counts non-padding tokens over the
steps after the first (warm-up) step, data collation included, on both sides.

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
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainer.errors import TrainerError

DEFAULT_DATA = "experiments/corpus/train.jsonl"
OUT = Path("reports/bench")
LOSS_RTOL = 1e-3  # per-step relative agreement of the two loss curves


@dataclass
class Row:
    name: str
    preset: str  # tiny | qwen2.5-0.5b (built from trainer.models.PRESETS)
    mode: str  # lora | qlora
    layers: int | None = None  # reduced depth (None: the preset's)
    max_seq_len: int = 256
    batch_size: int = 8
    steps: int = 8
    compare: str = "trl"  # trl: ours vs TRL; packing: ours unpacked vs ours packed
    shape: dict = field(default_factory=dict)


def rows(quick: bool) -> list[Row]:
    s = 4 if quick else 8
    big = 3 if quick else 5
    return [
        Row("tiny-lora", "tiny", "lora", steps=s),
        Row("tiny-qlora", "tiny", "qlora", steps=s),
        Row("qwen0.5b-2layers-lora", "qwen2.5-0.5b", "lora", layers=2, batch_size=2, steps=big),
        Row("qwen0.5b-2layers-qlora", "qwen2.5-0.5b", "qlora", layers=2, batch_size=2, steps=big),
        Row("tiny-lora-packing", "tiny", "lora", max_seq_len=512, batch_size=4, steps=s, compare="packing"),
    ]


# ------------------------------------------------------------------ shared setup


def build_base(row: Row, records: list[dict], root: Path) -> Path:
    """A saved base model directory (random init, seed 0) + its corpus tokenizer, built once per shape."""
    from transformers import AutoModelForCausalLM

    from trainer.models import PRESETS, preset_config
    from trainer.tokenizer import train_tokenizer

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


def load_tokenizer(base: Path):
    """The trained byte-level BPE exactly as saved (AutoTokenizer would pick a different class from config.json)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(base)


def encode(tokenizer, records: list[dict], max_seq_len: int, limit: int) -> list:
    """The first `limit` records that fit `max_seq_len` whole (so packing on/off see the same examples)."""
    from trainer.data import build_examples

    fitting = []
    for start in range(0, len(records), 256):  # encode in chunks, stop once enough fit
        examples, _ = build_examples(tokenizer, records[start : start + 256], 10**9)
        fitting += [ex for ex in examples if len(ex.input_ids) <= max_seq_len]
        if len(fitting) >= limit:
            break
    if len(fitting) < limit:
        raise TrainerError(f"bench data: only {len(fitting)} examples fit max_seq_len={max_seq_len}; {limit} needed")
    return fitting[:limit]


def worker_config(spec: dict):
    from trainer.config import load_config

    return load_config(data={
        "name": "bench", "model": {"preset": None, "path": spec["base"]},
        "lora": {"rank": 16, "alpha": 32.0, "dropout": 0.0},
        "data": {"max_seq_len": spec["max_seq_len"], "packing": spec.get("packing", False)},
        "training": {"mode": spec["mode"], "max_steps": spec["steps"], "batch_size": spec["batch_size"],
                     "learning_rate": 2e-4, "warmup_ratio": 0.03, "min_lr_ratio": 0.1, "weight_decay": 0.01,
                     "gradient_clipping": 1.0, "seed": spec["seed"], "device": spec["device"]},
    })


def load_model(spec: dict):
    """Same seed, same code path for both trainers: trainer.models.load_for_training."""
    from trainer.models import BaseModel, load_for_training
    from trainer.runtime import resolve_device, seed_everything

    cfg = worker_config(spec)
    device, _ = resolve_device(spec["device"])
    seed_everything(spec["seed"], device)
    tokenizer = load_tokenizer(Path(spec["base"]))
    model = load_for_training(cfg, BaseModel(Path(spec["base"]), tokenizer, True, "bench base"), device)
    return cfg, device, tokenizer, model


def optimizer_and_schedule(model, cfg):
    from trainer.train import cosine_schedule

    t = cfg.training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, betas=(0.9, 0.999), weight_decay=t.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(t.max_steps, t.warmup_ratio, t.min_lr_ratio))


def stream_for(spec: dict, tokenizer):
    from trainer.data import BatchStream, load_jsonl
    from trainer.packing import pack_examples

    examples = encode(tokenizer, load_jsonl(spec["data"]), spec["max_seq_len"], spec["n_examples"])
    if spec.get("packing"):
        examples = pack_examples(examples, spec["max_seq_len"])
    return BatchStream(examples, spec["batch_size"], spec["seed"], tokenizer.pad_token_id)


def flop_counts(model, seq: float) -> dict:
    """Matmul weights on the gradient path (frozen and LoRA) and attention FLOPs per token (see module doc)."""
    config = model.config
    frozen = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Linear4bit":
            n = module.in_features * module.out_features
            if "lora_" in name:
                lora += n
            else:  # decoder linears and the LM head (tied or not, its matmul runs on every token)
                frozen += n
    attention = 12 * config.num_hidden_layers * seq * config.hidden_size
    return {"n_frozen_matmul": frozen, "n_lora": lora, "attention_per_token": attention,
            "flops_per_token": 6 * (frozen + lora) + attention,
            "flops_per_token_frozen_aware": 4 * frozen + 6 * lora + attention}


def _finish(spec: dict, device, times: list[float], tokens: list[int], losses: list[float], rows_len: list[float], model) -> dict:
    timed = slice(1, None)  # the first step warms caches and allocators
    seconds, toks = sum(times[timed]), sum(tokens[timed])
    out = {"trainer": spec["trainer"], "packing": spec.get("packing", False), "steps": len(times), "losses": losses,
           "tokens_per_step": tokens, "step_seconds": times, "tokens_per_s": toks / seconds if seconds else None,
           "tokens_per_s_best_step": max(n / t for n, t in zip(tokens[timed], times[timed])) if len(times) > 1 else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(device),
           "mean_row_len": statistics.mean(rows_len), **flop_counts(model, statistics.mean(rows_len))}
    if device.type == "cuda":
        out["peak_vram_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ------------------------------------------------------------------ the two trainers


def run_ours(spec: dict) -> dict:
    """Our loop: BatchStream micro-batches into trainer.train.train_step, nothing else."""
    from trainer.train import train_step

    cfg, device, tokenizer, model = load_model(spec)
    optimizer, scheduler = optimizer_and_schedule(model, cfg)
    stream = stream_for(spec, tokenizer)
    model.train()
    times, tokens, losses, rows_len = [], [], [], []
    profile = spec.get("profile_steps", 0)
    for step in range(1, cfg.training.max_steps + 1):
        started = time.perf_counter()
        micro = [stream.next_batch()]
        loss, _ = train_step(model, optimizer, scheduler, micro, device, cfg.training.gradient_clipping, step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        tokens.append(int(micro[0]["attention_mask"].sum()))
        rows_len.append(micro[0]["input_ids"].shape[1])
        losses.append(loss)
    out = _finish(spec, device, times, tokens, losses, rows_len, model)
    out["generation_tokens_per_s"] = generation_rate(model, tokenizer, device)
    if profile:
        out["profile"] = profile_steps(model, optimizer, scheduler, stream, device, cfg, profile)
    return out


def run_trl(spec: dict) -> dict:
    """TRL's SFTTrainer on the same model object type, data order, optimizer and schedule."""
    try:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise TrainerError(f"the TRL peer needs the bench extra: pip install -e '.[bench]' ({exc})") from None
    from trainer.data import IGNORE

    cfg, device, tokenizer, model = load_model(spec)
    optimizer, scheduler = optimizer_and_schedule(model, cfg)
    stream = stream_for(spec, tokenizer)
    n = cfg.training.max_steps * spec["batch_size"]
    order = []
    epoch = 0
    while len(order) < n:  # the exact example order BatchStream walks
        from trainer.data import epoch_order

        order += epoch_order(len(stream.examples), spec["seed"], epoch)
        epoch += 1
    rows = [stream.examples[i] for i in order[:n]]
    dataset = Dataset.from_list([{"input_ids": ex.input_ids, "completion_mask": [int(x != IGNORE) for x in ex.labels]} for ex in rows])

    class Recorder(TrainerCallback):
        def __init__(self):
            self.ends, self.losses = [time.perf_counter()], []

        def on_step_end(self, args, state, control, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    class SequentialSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

    args = SFTConfig(
        output_dir=spec["workdir"], max_steps=cfg.training.max_steps, per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1, max_grad_norm=1.0, logging_steps=1, save_strategy="no", eval_strategy="no",
        report_to="none", seed=spec["seed"], data_seed=spec["seed"], max_length=spec["max_seq_len"],
        completion_only_loss=True, packing=False, gradient_checkpointing=False, bf16=device.type == "cuda",
        use_cpu=device.type == "cpu", dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=True,
    )
    recorder = Recorder()
    trainer = SequentialSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   optimizers=(optimizer, scheduler), callbacks=[recorder])
    recorder.ends = [time.perf_counter()]
    trainer.train()
    times = [b - a for a, b in zip(recorder.ends, recorder.ends[1:])]
    from trainer.data import collate

    batches = [collate(rows[i : i + spec["batch_size"]], tokenizer.pad_token_id) for i in range(0, n, spec["batch_size"])]
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    return _finish(spec, device, times, tokens, recorder.losses, [b["input_ids"].shape[1] for b in batches], model)


# ------------------------------------------------------------------ extras: generation, profiler, peak


@torch.no_grad()
def generation_rate(model, tokenizer, device, new_tokens: int = 64) -> float:
    """Greedy decoding, batch 1, exactly `new_tokens` tokens (end-of-turn ignored), tokens/s."""
    from trainer.data import render_prompt

    model.eval()
    ids = tokenizer(render_prompt("fn add(a: i32, b: i32) -> i32 { a + b }"), return_tensors="pt").input_ids.to(device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    model.generate(input_ids=ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    started = time.perf_counter()
    out = model.generate(input_ids=ids, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.train()
    return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - started)


def profile_steps(model, optimizer, scheduler, stream, device, cfg, steps: int, top: int = 15) -> list[dict]:
    """torch.profiler over `steps` more train steps: the top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    from trainer.train import train_step

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(steps):
            train_step(model, optimizer, scheduler, [stream.next_batch()], device, cfg.training.gradient_clipping, 10_000 + i)
    attr = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr, 0), reverse=True)
    total = sum(getattr(e, attr, 0) for e in events) or 1
    return [{"op": e.key, "self_ms": getattr(e, attr) / 1000 / steps, "share": getattr(e, attr) / total, "calls": e.count // steps}
            for e in events[:top]]


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
    done = subprocess.run([sys.executable, "-m", "falsify.bench.trl", "--worker", str(spec_file)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {spec['label']} failed:\n{done.stderr[-4000:]}")
    return json.loads(result_file.read_text())


def summarize(row: Row, runs: dict[str, list[dict]], peak: dict) -> dict:
    a_name, b_name = ("ours", "trl") if row.compare == "trl" else ("ours-unpacked", "ours-packed")
    a, b = runs[a_name], runs[b_name]
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    best = {k: statistics.median(r["tokens_per_s_best_step"] for r in v) for k, v in runs.items()}
    num, den = (a, b) if row.compare == "trl" else (b, a)
    pair_ratios = [x["tokens_per_s"] / y["tokens_per_s"] for x, y in zip(num, den)]
    out = {"row": asdict(row), "runs": runs, "median_tokens_per_s": med, "median_best_step_tokens_per_s": best,
           "pair_ratios": pair_ratios, "median_pair_ratio": statistics.median(pair_ratios), "ratio": med[a_name if row.compare == "trl" else b_name] / med[b_name if row.compare == "trl" else a_name],
           "ratio_meaning": f"{a_name} / {b_name}" if row.compare == "trl" else f"{b_name} / {a_name}",
           "peak_rss_mb": {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}, "peak": peak}
    for k, v in runs.items():
        f = v[0]
        out.setdefault("mfu", {})[k] = med[k] * f["flops_per_token"] / peak["peak_flops"]
        out.setdefault("mfu_frozen_aware", {})[k] = med[k] * f["flops_per_token_frozen_aware"] / peak["peak_flops"]
        if "peak_vram_mb" in f:
            out.setdefault("peak_vram_mb", {})[k] = max(r["peak_vram_mb"] for r in v)
    if row.compare == "trl":
        la, lb = a[0]["losses"], b[0]["losses"]
        rel = max(abs(x - y) / abs(y) for x, y in zip(la, lb)) if la and len(la) == len(lb) else float("inf")
        out["loss_curves"] = {"ours": la, "trl": lb, "max_relative_difference": rel, "rtol": LOSS_RTOL, "agree": rel <= LOSS_RTOL}
    out["generation_tokens_per_s"] = statistics.median(r["generation_tokens_per_s"] for r in runs[a_name] if r.get("generation_tokens_per_s"))
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = ["# Benchmark: our train_step loop vs TRL SFTTrainer", "",
             f"Device: {env['device']} ({env['cpu']}, {env['threads']} threads); torch {env['torch']}, "
             f"transformers {env['transformers']}, peft {env['peft']}, trl {env.get('trl')}. Data: {env['data']} "
             f"({env['data_sha256'][:12]}). {results['pairs']} alternating pairs per row; medians.", "",
             "| row | tokens/s A | tokens/s B | ratio A/B (of medians; per pair) | best-step ratio | loss curves (max rel. diff) | peak RSS MB A / B | MFU A / B | MFU frozen-aware A / B |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        names = list(r["median_tokens_per_s"])
        a, b = ("ours", "trl") if "trl" in names else ("ours-packed", "ours-unpacked")
        curves = r.get("loss_curves")
        agree = f"{'agree' if curves['agree'] else 'DIFFER'}: {curves['max_relative_difference']:.1e} (tolerance {curves['rtol']:g})" if curves else "n/a (packed rows: other layout)"
        lines.append(f"| {r['row']['name']} (A={a}, B={b}) | {r['median_tokens_per_s'][a]:.0f} | {r['median_tokens_per_s'][b]:.0f} | "
                     f"{r['ratio']:.2f}x; {' '.join(f'{x:.2f}' for x in r['pair_ratios'])} | "
                     f"{r['median_best_step_tokens_per_s'][a] / r['median_best_step_tokens_per_s'][b]:.2f}x | {agree} | {r['peak_rss_mb'][a]:.0f} / {r['peak_rss_mb'][b]:.0f} | "
                     f"{r['mfu'][a]:.1%} / {r['mfu'][b]:.1%} | {r['mfu_frozen_aware'][a]:.1%} / {r['mfu_frozen_aware'][b]:.1%} |")
    lines += ["", f"Peak GEMM (measured, {results['rows'][0]['peak']['dtype']}): "
              + ", ".join(f"{r['row']['name']}: {r['peak']['peak_flops'] / 1e9:.1f} GFLOP/s" for r in results["rows"]), ""]
    gen = ", ".join(f"{r['row']['name']}: {r['generation_tokens_per_s']:.0f}" for r in results["rows"] if r.get("generation_tokens_per_s"))
    lines += [f"Greedy generation, batch 1, 64 new tokens (ours, tokens/s): {gen}", ""]
    if results.get("profile"):
        lines += [f"## Where the time goes ({results['profile']['row']}, ours, torch.profiler, per step)", "",
                  "| op | self ms | share | calls |", "|---|---|---|---|"]
        lines += [f"| `{p['op']}` | {p['self_ms']:.1f} | {p['share']:.1%} | {p['calls']} |" for p in results["profile"]["top_ops"]]
    lines += ["", "## Reproduce", "", "```", results["command"], "```", ""]
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
    parser = argparse.ArgumentParser(prog="python -m falsify.bench.trl", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps per run (still >= 3 pairs)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--data", default=DEFAULT_DATA, help="training JSONL (corpus records)")
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--workdir", default="experiments/bench")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.worker:
            spec = json.loads(Path(args.worker).read_text())
            result = (run_trl if spec["trainer"] == "trl" else run_ours)(spec)
            Path(spec["result"]).write_text(json.dumps(result))
            return 0
        return drive(args, argv)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def drive(args, argv) -> int:
    from trainer.data import load_jsonl
    from trainer.runtime import resolve_device

    device, _ = resolve_device(args.device)  # --device cuda without CUDA: a one-line error
    if args.pairs < 3:
        raise TrainerError(f"--pairs expects an integer >= 3 (alternating A B pairs), got {args.pairs}")
    data = Path(args.data)
    if not data.is_file():
        raise TrainerError(f"bench data not found: {data} (build the corpus with `make corpus`, or pass --data FILE)")
    selected = rows(args.quick)
    if args.rows:
        wanted = args.rows.split(",")
        unknown = sorted(set(wanted) - {r.name for r in selected})
        if unknown:
            raise TrainerError(f"--rows: unknown row(s) {unknown} (known: {', '.join(r.name for r in selected)})")
        selected = [r for r in selected if r.name in wanted]
    if any(r.compare == "trl" for r in selected):
        try:
            import trl  # noqa: F401
        except ImportError:
            raise TrainerError("TRL is not installed: pip install -e '.[bench]' (it stays an optional extra)") from None
    workdir, out = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    records = load_jsonl(data)
    results = {"environment": environment(device, data), "pairs": args.pairs, "loss_rtol": LOSS_RTOL, "rows": [],
               "command": " ".join(["python -m falsify.bench.trl", *(argv if argv is not None else sys.argv[1:])])}
    for row in selected:
        base = build_base(row, records, workdir)
        spec = {"base": str(base), "mode": row.mode, "data": str(data), "max_seq_len": row.max_seq_len, "batch_size": row.batch_size,
                "steps": row.steps, "seed": 0, "device": args.device, "n_examples": row.batch_size * row.steps}
        names = ("ours", "trl") if row.compare == "trl" else ("ours-unpacked", "ours-packed")
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for pair in range(args.pairs):
            for name in names:
                s = {**spec, "trainer": "trl" if name == "trl" else "ours", "packing": name == "ours-packed", "label": f"{row.name}-{name}-{pair}"}
                runs[name].append(run_worker(s, workdir))
                print(f"{row.name} pair {pair + 1}/{args.pairs} {name}: {runs[name][-1]['tokens_per_s']:.0f} tok/s", flush=True)
        tokens = row.batch_size * row.max_seq_len
        summary = summarize(row, runs, measure_peak(gemm_shapes(base, tokens), device, torch.bfloat16 if device.type == "cuda" else torch.float32))
        results["rows"].append(summary)
        print(f"{row.name}: ratio {summary['ratio']:.2f} ({summary['ratio_meaning']})", flush=True)
    prof_row = next((r for r in selected if r.compare == "trl"), None)
    if prof_row is not None:
        base = build_base(prof_row, records, workdir)
        spec = {"base": str(base), "mode": prof_row.mode, "data": str(data), "max_seq_len": prof_row.max_seq_len,
                "batch_size": prof_row.batch_size, "steps": 2, "seed": 0, "device": args.device, "trainer": "ours",
                "n_examples": prof_row.batch_size * 6, "profile_steps": 3, "label": f"{prof_row.name}-profile"}
        results["profile"] = {"row": prof_row.name, "top_ops": run_worker(spec, workdir)["profile"]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

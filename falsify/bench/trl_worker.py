"""The worker side of `python -m falsify.bench trl`: one training run (ours or TRL's) in its own process.

falsify/bench/trl.py starts each run as `python -m falsify.bench trl --worker SPEC` and reads back
the JSON it writes; what is held equal between the two trainers is listed there.
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import torch

from trainer.errors import TrainerError


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
                     "gradient_clipping": 1.0, "seed": spec["seed"], "device": spec["device"],
                     "precision": "bf16-where-native" if spec.get("precision") == "bf16" else "auto"},
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
    """The trainer's own optimizer and schedule, so both trainers are compared on the same update rule."""
    from trainer.train import build_optimizer

    return build_optimizer(model, cfg.training, cfg.training.max_steps)


def stream_for(spec: dict, tokenizer):
    from trainer.data import BatchStream, load_jsonl
    from trainer.packing import pack_examples

    examples = encode(tokenizer, load_jsonl(spec["data"]), spec["max_seq_len"], spec["n_examples"])
    if spec.get("packing"):
        examples = pack_examples(examples, spec["max_seq_len"])
    return BatchStream(examples, spec["batch_size"], spec["seed"], tokenizer.pad_token_id)


def flop_counts(model, seq: float) -> dict:
    """Matmul weights on the gradient path (frozen and LoRA) and attention FLOPs per token (see module doc).

    Only torch Linear layers count (bitsandbytes' Linear4bit is one). peft's LoRA wrapper of a 4-bit layer is
    also named `Linear4bit` and has in/out features, but it is not a matmul of its own: counting it as one
    counted every quantized weight twice (the QLoRA rows' MFU above 100%)."""
    config = model.config
    frozen = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
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


def run_ours(spec: dict) -> dict:
    """Our loop: BatchStream micro-batches into trainer.train.train_step, nothing else."""
    from trainer.runtime import compute_dtype, set_precision
    from trainer.train import train_step

    cfg, device, tokenizer, model = load_model(spec)
    set_precision(cfg.training.precision)  # as trainer.train.setup does: train_step's autocast reads it
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
    out["compute_dtype"] = compute_dtype(device)
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
        completion_only_loss=True, packing=False, gradient_checkpointing=False,
        bf16=device.type == "cuda" or spec.get("precision") == "bf16",
        use_cpu=device.type == "cpu", dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=True,
    )
    recorder = Recorder()
    trainer = SequentialSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   optimizers=(optimizer, scheduler), callbacks=[recorder])
    recorder.ends = [time.perf_counter()]
    if spec.get("profile_steps"):  # where TRL's time goes, over the same steps: trainer.train() under the profiler
        return {"profile": top_ops(trainer.train, device, cfg.training.max_steps)}
    trainer.train()
    times = [b - a for a, b in zip(recorder.ends, recorder.ends[1:])]
    from trainer.data import collate

    batches = [collate(rows[i : i + spec["batch_size"]], tokenizer.pad_token_id) for i in range(0, n, spec["batch_size"])]
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    return _finish(spec, device, times, tokens, recorder.losses, [b["input_ids"].shape[1] for b in batches], model)


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
    from trainer.train import train_step

    def run():
        for i in range(steps):
            train_step(model, optimizer, scheduler, [stream.next_batch()], device, cfg.training.gradient_clipping, 10_000 + i)
    return top_ops(run, device, steps, top)


def top_ops(run, device, steps: int, top: int = 15) -> list[dict]:
    """torch.profiler around `run()` (which takes `steps` train steps): the top ops by self time, per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    attr = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr, 0), reverse=True)
    total = sum(getattr(e, attr, 0) for e in events) or 1
    return [{"op": e.key, "self_ms": getattr(e, attr) / 1000 / steps, "share": getattr(e, attr) / total, "calls": e.count // steps}
            for e in events[:top]]

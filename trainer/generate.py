"""Generation: load an experiment's model + adapter and write tests for each function.

Output records follow the samples schema of `falsify.evaluate`: in-crate (with `crate`,
and `function_code` verbatim from the crate file) for corpus records that say where their
function is, standalone for the rest. They carry their
provenance (model and adapter sha256, generation settings, tokens/s) so a scorecard can
trace every generated test back to the weights that wrote it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from trainer import checkpoint as ckpt
from trainer.config import GenerationConfig, load_config
from trainer.corpus.in_crate import has_location, in_crate_sample, with_test_imports
from trainer.data import IM_END, render_prompt
from trainer.errors import TrainerError
from trainer.experiment import ExperimentPaths, quiet_libraries, sha256_of_dir
from trainer.files import iter_jsonl, write_json_atomic
from trainer.models import BaseModel, load_for_training, load_tokenizer
from trainer.runtime import resolve_device

log = logging.getLogger("trainer")


def pick_checkpoint(paths: ExperimentPaths, name: str = "best") -> Path:
    """`best`, `last`, or `step-N`; `best` falls back to the newest step only if no eval ever ran."""
    if name == "last" or (name == "best" and not paths.best.is_dir()):
        newest = ckpt.latest_valid(paths)
        if newest is None:
            raise TrainerError(f"{paths.root}: no checkpoint to generate from (train first)")
        return newest
    path = paths.best if name == "best" else paths.checkpoints / name
    if not path.is_dir():
        have = ", ".join(p.name for p in sorted(paths.checkpoints.iterdir()))
        raise TrainerError(f"{paths.root}: no checkpoint '{name}' (have: {have})")
    return path


def load_experiment(experiment: Path, checkpoint: str = "best", device: str | None = None):
    """The trained model (base + checkpoint weights) in eval mode, its tokenizer and provenance."""
    paths = ExperimentPaths(Path(experiment))
    if not paths.config.is_file():
        raise TrainerError(f"{experiment} is not an experiment directory (no {paths.config.name})")
    quiet_libraries()
    cfg = load_config(paths.config)
    dev, _ = resolve_device(device or cfg.training.device)
    base_dir = Path(cfg.model.path) if cfg.model.path else paths.base_model
    if cfg.model.init_weights:
        raise TrainerError("generation from pretrain --init experiments is not supported yet: use mode lora/qlora/full")
    base = BaseModel(base_dir, load_tokenizer(base_dir), cfg.model.path is None, str(base_dir))
    model = load_for_training(cfg, base, dev)
    chosen = pick_checkpoint(paths, checkpoint)
    ckpt.load_weights(model, chosen)
    model.eval()
    provenance = {
        "experiment": str(paths.root),
        "checkpoint": str(chosen),
        "model_sha256": sha256_of_dir(base_dir),
        "adapter_sha256": sha256_of_dir(chosen),
        "mode": cfg.training.mode,
        "device": str(dev),
    }
    return model, base.tokenizer, cfg, provenance, dev


@torch.no_grad()
def generate_one(model, tokenizer, function_code: str, gen: GenerationConfig, device: torch.device,
                 context: str = "") -> tuple[str, int, float]:
    """Greedy (temperature 0) or sampled completion that stops at <|im_end|>; (text, new tokens, seconds).

    `context` (crate context for the prompt) is left out when the prompt with it and
    `gen.max_new_tokens` would not fit the model's context length.
    """
    ids = tokenizer.encode(render_prompt(function_code, context), add_special_tokens=False, return_tensors="pt").to(device)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context and isinstance(limit, int) and ids.shape[1] + gen.max_new_tokens > limit:
        ids = tokenizer.encode(render_prompt(function_code), add_special_tokens=False, return_tensors="pt").to(device)
    end = tokenizer.convert_tokens_to_ids(IM_END)
    sampling = gen.temperature > 0
    started = time.perf_counter()
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen.max_new_tokens,
        do_sample=sampling, temperature=gen.temperature if sampling else None, top_p=gen.top_p if sampling else None,
        top_k=None, eos_token_id=end, pad_token_id=tokenizer.pad_token_id,
    )
    seconds = time.perf_counter() - started
    new = out[0, ids.shape[1]:].tolist()
    if end in new:
        new = new[: new.index(end)]
    return tokenizer.decode(new, skip_special_tokens=True), len(new), seconds


def sample_for_monitor(model, tokenizer, record: dict, device: torch.device) -> tuple[str, str, str]:
    """A short greedy peek for the live monitor: (input, target, generated)."""
    text, _, _ = generate_one(model, tokenizer, record["input"], GenerationConfig(max_new_tokens=48), device)
    model.train()
    return record["input"], record["output"], text


def read_functions(path: Path) -> list[dict]:
    """Accept corpus records ({"input", "output"}) or samples ({"id", "function_code"}).

    A row's `prompt_code` is what the model is shown (a record's `input`); a corpus record
    that says where its function is becomes an in-crate sample (`in_crate_sample`).
    """
    if not path.is_file():
        raise TrainerError(f"input file not found: {path}")
    rows = []
    for item in iter_jsonl(path):
        if item.problem is not None:
            raise item.error(path)
        rec = item.value if isinstance(item.value, dict) else {}
        code = rec.get("function_code", rec.get("input"))
        if not isinstance(code, str):
            raise item.error(path, "needs a string 'function_code' (or 'input')")
        meta = rec.get("metadata") or {}
        row = {
            "id": str(rec.get("id") or meta.get("id") or f"{path.stem}-{item.line}"),
            "prompt_code": code,
            "function_code": code,
            "reference_tests": rec.get("reference_tests", rec.get("output")),
            "metadata": meta,
        }
        if isinstance(rec.get("crate"), dict):
            row["crate"] = rec["crate"]  # a sample that is in-crate already
        elif "function_code" not in rec and has_location(meta):
            row.update(in_crate_sample(meta, code))
        rows.append(row)
    return rows


def partial_output_path(out_path: Path) -> Path:
    """Where `generate_file` streams its records until the last one is written and it renames the file."""
    return out_path.with_name(f".{out_path.name}.tmp")


def generation_summary_path(out_path: Path) -> Path:
    """The generation summary next to the records: tokens/s, latency, provenance."""
    return out_path.with_suffix(".summary.json")


def generate_file(experiment: Path, input_path: Path, out_path: Path, *, checkpoint: str = "best",
                  limit: int | None = None, gen: GenerationConfig | None = None, context: bool = False) -> dict:
    """Write one samples-schema record per function; returns a summary with tokens/s and latency.

    `context`: show each function's crate context (corpus `crate_context`) in the prompt.
    Off by default: training prompts have none.
    """
    model, tokenizer, cfg, provenance, device = load_experiment(experiment, checkpoint)
    gen = gen or cfg.generation
    if gen.temperature > 0:
        torch.manual_seed(cfg.training.seed)
    rows = read_functions(Path(input_path))[:limit]
    total_tokens, total_seconds, latencies = 0, 0.0, []
    out_path = Path(out_path)
    partial = partial_output_path(out_path)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("w", encoding="utf-8") as fh:  # streamed, so a watcher can count the rows done
        for i, row in enumerate(rows, 1):
            shown = row["metadata"].get("crate_context", "") if context else ""
            text, n, seconds = generate_one(model, tokenizer, row.pop("prompt_code"), gen, device, shown if isinstance(shown, str) else "")
            total_tokens, total_seconds = total_tokens + n, total_seconds + seconds
            latencies.append(seconds)
            row["generated_tests"] = with_test_imports(text) if "crate" in row else text
            row["metadata"] = {**row["metadata"], "generation": {**provenance, **asdict(gen), "new_tokens": n,
                                                                  "seconds": seconds, "tokens_per_s": n / seconds if seconds else None}}
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            log.info("generated %d/%d %s: %d tokens in %.2fs", i, len(rows), row["id"], n, seconds)
    partial.replace(out_path)
    latencies.sort()
    summary = {
        "functions": len(rows), "new_tokens": total_tokens, "seconds": total_seconds,
        "tokens_per_s": total_tokens / total_seconds if total_seconds else None,
        "median_seconds_per_function": latencies[len(latencies) // 2] if latencies else None,
        **provenance, "generation": asdict(gen), "prompt_context": context,
    }
    write_json_atomic(generation_summary_path(out_path), summary)
    return summary

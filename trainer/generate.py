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
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from trainer import checkpoint as ckpt
from trainer.config import GenerationConfig, load_config
from trainer.corpus.critic import critic_text
from trainer.corpus.in_crate import has_location, in_crate_sample, with_test_imports
from trainer.critic import GOOD, Critic
from trainer.data import end_of_turn_id, prompt_for
from trainer.errors import TrainerError
from trainer.experiment import ExperimentPaths, quiet_libraries, sha256_of_dir
from trainer.extract import extract_rust, first_block_closed
from trainer.files import iter_jsonl, write_json_atomic
from trainer.models import BaseModel, load_for_training, load_tokenizer
from trainer.rejection import refuse_if_rejected
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


BASE = "base"  # --checkpoint base: the base model as it is, no adapter (the zero-shot side of base vs tuned)


def load_experiment(experiment: Path, checkpoint: str = "best", device: str | None = None, allow_rejected: bool = False):
    """The trained model (base + checkpoint weights) in eval mode, its tokenizer and provenance.

    `checkpoint="base"` loads the base exactly as training starts from it (QLoRA: the same NF4
    base) with a fresh adapter, which is the identity (peft starts LoRA's B at zero), so base
    and tuned differ only by what training learned. A rejected adapter (trainer.rejection)
    is refused unless `allow_rejected`.
    """
    paths = ExperimentPaths(Path(experiment))
    if not paths.config.is_file():
        raise TrainerError(f"{experiment} is not an experiment directory (no {paths.config.name})")
    quiet_libraries()
    cfg = load_config(paths.config)
    dev, _ = resolve_device(device or cfg.training.device)
    base_dir = Path(cfg.model.path) if cfg.model.path else paths.base_model
    if cfg.model.init_weights:
        raise TrainerError("generation from pretrain --init experiments is not supported yet: use mode lora/qlora/full")
    if cfg.training.task != "generate":
        raise TrainerError(f"{experiment} trained a classifier (training.task={cfg.training.task}); it generates no text")
    chosen = None if checkpoint == BASE else pick_checkpoint(paths, checkpoint)
    adapter_sha256 = None if chosen is None else sha256_of_dir(chosen)
    if chosen is not None:
        warning = refuse_if_rejected(paths, adapter_sha256, allow_rejected)
        if warning:
            log.warning(warning)
    base = BaseModel(base_dir, load_tokenizer(base_dir), cfg.model.path is None, str(base_dir))
    model = load_for_training(cfg, base, dev)
    if chosen is not None:
        ckpt.load_weights(model, chosen)
    model.eval()
    provenance = {
        "experiment": str(paths.root),
        "checkpoint": BASE if chosen is None else str(chosen),
        "model_sha256": sha256_of_dir(base_dir),
        "adapter_sha256": adapter_sha256,
        "mode": cfg.training.mode,
        "device": str(dev),
    }
    return model, base.tokenizer, cfg, provenance, dev


class FirstCodeBlockClosed(StoppingCriteria):
    """Stop a row once its decoded text has closed its first code block (see trainer.extract)."""

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer, self.prompt_width = tokenizer, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor([first_block_closed(t) for t in texts], device=input_ids.device)


def fitting_prompt(model, tokenizer, function_code: str, context: str, max_new_tokens: int) -> str:
    """The prompt, without `context` when it and `max_new_tokens` would overflow the model's context."""
    prompt = prompt_for(tokenizer, function_code, context)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context and isinstance(limit, int) and len(tokenizer.encode(prompt, add_special_tokens=False)) + max_new_tokens > limit:
        return prompt_for(tokenizer, function_code)
    return prompt


def cut_at_end(new: list[int], end: int, pad: int | None) -> list[int]:
    if end in new:
        new = new[: new.index(end)]
    while new and pad is not None and new[-1] == pad:
        new = new[:-1]
    return new


@torch.no_grad()
def generate_batch(model, tokenizer, prompts: list[str], gen: GenerationConfig,
                   device: torch.device) -> tuple[list[str], list[int], float]:
    """Left-padded batched generation with the KV cache; (texts, new tokens per row, seconds).

    Greedy unless `gen.temperature > 0`; each row stops at end-of-turn or once it has
    closed its first code block.
    """
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer(prompts, add_special_tokens=False, return_tensors="pt", padding=True).to(device)
    finally:
        tokenizer.padding_side = side
    end, width, sampling = end_of_turn_id(tokenizer), batch["input_ids"].shape[1], gen.temperature > 0
    started = time.perf_counter()
    out = model.generate(
        **batch, max_new_tokens=gen.max_new_tokens, do_sample=sampling, use_cache=True,
        temperature=gen.temperature if sampling else None, top_p=gen.top_p if sampling else None, top_k=None,
        eos_token_id=end, pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=StoppingCriteriaList([FirstCodeBlockClosed(tokenizer, width)]),
    )
    seconds = time.perf_counter() - started
    rows = [cut_at_end(row[width:].tolist(), end, tokenizer.pad_token_id) for row in out]
    return [tokenizer.decode(r, skip_special_tokens=True) for r in rows], [len(r) for r in rows], seconds


def generate_one(model, tokenizer, function_code: str, gen: GenerationConfig, device: torch.device,
                 context: str = "") -> tuple[str, int, float]:
    """One function through `generate_batch`; (text, new tokens, seconds)."""
    prompt = fitting_prompt(model, tokenizer, function_code, context, gen.max_new_tokens)
    texts, counts, seconds = generate_batch(model, tokenizer, [prompt], gen, device)
    return texts[0], counts[0], seconds


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


def shown_context(row: dict, context: bool) -> str:
    shown = row["metadata"].get("crate_context", "") if context else ""
    return shown if isinstance(shown, str) else ""


def as_sample(row: dict, text: str, generation: dict) -> dict:
    """One samples-schema record: the extracted code as `generated_tests`, the raw text beside it."""
    found = extract_rust(text)
    tests = with_test_imports(found.code) if "crate" in row and found.code else found.code
    return {**row, "generated_tests": tests, "raw_generation": text, "extraction": found.reason,
            "metadata": {**row["metadata"], "generation": generation}}


def write_record(fh, record: dict) -> None:
    fh.write(json.dumps(record, sort_keys=True) + "\n")
    fh.flush()


def first_candidates_path(out_path: Path) -> Path:
    """Where `generate_file --candidates N` writes each function's first candidate: the side reranking is compared with."""
    return out_path.with_name(f"{out_path.stem}.first{out_path.suffix}")


def rerank(critic, records: list[dict]) -> tuple[int, list[float | None]]:
    """The candidate the critic rates most likely `good`, and every candidate's P(good).

    A candidate with no extracted code gets no score and is never chosen over one that has
    code (the critic was trained on tests, not on empty text); if none has code, the first.
    """
    scored = [i for i, rec in enumerate(records) if rec["generated_tests"].strip()]
    p_good: list[float | None] = [None] * len(records)
    if scored:
        probs = critic.probabilities([critic_text(records[i]["function_code"], records[i]["generated_tests"]) for i in scored])
        for i, p in zip(scored, probs[:, critic.labels.index(GOOD)]):
            p_good[i] = float(p)
    best = max(scored, key=lambda i: p_good[i]) if scored else 0  # max keeps the first of equals
    return best, p_good


def generate_file(experiment: Path, input_path: Path, out_path: Path, *, checkpoint: str = "best",
                  limit: int | None = None, gen: GenerationConfig | None = None, context: bool = False,
                  batch_size: int = 8, allow_rejected: bool = False, temperature: float | None = None, candidates: int = 1,
                  critic: Path | None = None) -> dict:
    """Write one samples-schema record per function; returns a summary with tokens/s and latency.

    `temperature`: overrides the config's `generation.temperature` (0: greedy).
    `context`: show each function's crate context (corpus `crate_context`) in the prompt.
    Off by default: training prompts have none. Rows are generated `batch_size` at a
    time; a record's `seconds` is its share of its batch's wall time.

    `candidates` N > 1 with a `critic` (a classify experiment, trainer.critic): draw N
    sampled candidates per function, write the one the critic rates most likely `good` to
    `out_path`, and each function's first candidate to `first_candidates_path(out_path)`,
    so that an evaluation of both says whether reranking helped.
    """
    if candidates < 1:
        raise TrainerError(f"--candidates must be at least 1, got {candidates}")
    if (candidates > 1) != (critic is not None):
        raise TrainerError("--candidates N (N > 1) and --critic DIR go together: the critic picks among the N candidates")
    model, tokenizer, cfg, provenance, device = load_experiment(experiment, checkpoint, allow_rejected=allow_rejected)
    gen = gen or cfg.generation
    gen = gen if temperature is None else replace(gen, temperature=temperature)
    if candidates > 1 and gen.temperature <= 0:
        raise TrainerError(f"--candidates {candidates}: greedy decoding (generation.temperature 0) would give {candidates} copies "
                           "of one candidate; set --temperature above 0")
    if gen.temperature > 0:
        torch.manual_seed(cfg.training.seed)
    judge = Critic(critic) if critic is not None else None
    rows = read_functions(Path(input_path))[:limit]
    total_tokens, total_seconds, latencies, chose_first, critic_seconds = 0, 0.0, [], 0, 0.0
    out_path = Path(out_path)
    outputs = [out_path] + ([first_candidates_path(out_path)] if judge else [])
    partials = [partial_output_path(p) for p in outputs]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as files:  # streamed, so a watcher can count the rows done
        fhs = [files.enter_context(p.open("w", encoding="utf-8")) for p in partials]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            prompts = [fitting_prompt(model, tokenizer, row.pop("prompt_code"), shown_context(row, context), gen.max_new_tokens)
                       for row in chunk]
            drawn = [generate_batch(model, tokenizer, prompts, gen, device) for _ in range(candidates)]
            seconds = sum(d[2] for d in drawn)
            tokens = sum(sum(d[1]) for d in drawn)
            total_tokens, total_seconds = total_tokens + tokens, total_seconds + seconds
            for i, row in enumerate(chunk):
                latencies.append(seconds / len(chunk))
                common = {**provenance, **asdict(gen), "batch_size": len(chunk), "seconds": seconds / len(chunk),
                          "generation_seconds": seconds / len(chunk), "batch_seconds": seconds,
                          "tokens_per_s": tokens / seconds if seconds else None}
                records = [as_sample(row, texts[i], {**common, "new_tokens": counts[i]}) for texts, counts, _ in drawn]
                if judge is None:
                    write_record(fhs[0], records[0])
                    continue
                judged = time.perf_counter()
                best, p_good = rerank(judge, records)
                critic_seconds += time.perf_counter() - judged
                chose_first += best == 0
                for fh, k, side in ((fhs[0], best, "critic-reranked"), (fhs[1], 0, "first candidate")):
                    generation = {**records[k]["metadata"]["generation"], "rerank": {
                        "candidates": candidates, "chosen": k, "side": side, "critic": str(judge.checkpoint), "critic_p_good": p_good}}
                    write_record(fh, {**records[k], "metadata": {**records[k]["metadata"], "generation": generation}})
            log.info("generated %d/%d: %d tokens in %.2fs", start + len(chunk), len(rows), tokens, seconds)
    for partial, final in zip(partials, outputs):
        partial.replace(final)
    latencies.sort()
    summary = {
        "functions": len(rows), "new_tokens": total_tokens, "seconds": total_seconds, "batch_size": batch_size,
        "tokens_per_s": total_tokens / total_seconds if total_seconds else None,
        "tokens_per_second": total_tokens / total_seconds if total_seconds else None,
        "seconds_per_function": total_seconds / len(rows) if rows else None,
        "median_seconds_per_function": latencies[len(latencies) // 2] if latencies else None,
        **provenance, "generation": asdict(gen), "prompt_context": context, "candidates": candidates,
    }
    if judge is not None:
        summary["rerank"] = {"critic": str(judge.checkpoint), "first_candidates": str(outputs[1]),
                             "chose_first": chose_first, "functions": len(rows), "critic_seconds": critic_seconds}
    write_json_atomic(generation_summary_path(out_path), summary)
    return summary

"""The training loop, readable top to bottom in `train()`.

Config in, experiment directory out. Everything the loop needs (model, data, optimizer,
schedule) is built right here; checkpoint I/O, the metric store and model loading live
in their own modules.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trainer import checkpoint as ckpt
from trainer import distributed, hardware
from trainer.config import Config, load_config
from trainer.data import IGNORE, BatchStream, build_examples, count_label_tokens, count_tokens, eval_batches, load_jsonl
from trainer.errors import AndonStop, TrainerError
from trainer.experiment import ExperimentPaths, prepare_directory, setup_logging, write_json_atomic, write_lock
from trainer.hparams import RULES, diagnose
from trainer.models import load_for_training, prepare_base
from trainer.monitor.store import MetricStore
from trainer.packing import pack_examples
from trainer.runtime import assert_on_device, autocast, resolve_device, rng_state, seed_everything, set_rng_state

log = logging.getLogger("trainer")


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over label tokens (the caller divides)."""
    vocab = logits.size(-1)
    return F.cross_entropy(
        logits[:, :-1, :].float().reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def cosine_schedule(total_steps: int, warmup_ratio: float, min_lr_ratio: float):
    """LR multiplier per optimizer step: linear warmup, cosine decay down to `min_lr_ratio`."""
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def model_inputs(batch: dict, device: torch.device) -> dict:
    """The model's keyword arguments for a collated batch.

    A packed batch (trainer.packing) carries restarting `position_ids` and must come
    without the 2D attention mask: transformers then builds the block-diagonal mask that
    stops attention at sample boundaries. No cache either, or it skips that detection.
    """
    inputs = {"input_ids": batch["input_ids"].to(device), "use_cache": False}
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"].to(device)
    else:
        inputs["attention_mask"] = batch["attention_mask"].to(device)
    return inputs


class LabelLoss(torch.nn.Module):
    """Summed next-token loss, with the LM head applied only at positions that have a label.

    Why: the logits of prompt and padding positions are computed only to be thrown away,
    and with a 150k vocabulary the head is most of a small model's FLOPs. The result is
    the same sum as `token_loss_sum` over full logits (up to float rounding). Models that
    scale or soft-cap their logits, or have no separable decoder + head, take the full
    path through their own forward. DDP wraps this module, so gradient sync sees the
    whole computation.
    """

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = lm
        causal = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
        config = causal.config
        scaled = any(getattr(config, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale", "logits_scaling"))
        self.split = None if scaled or not hasattr(causal, "get_decoder") else (causal.get_decoder(), causal.get_output_embeddings())

    def forward(self, labels: torch.Tensor, **inputs) -> torch.Tensor:
        if self.split is None:
            return token_loss_sum(self.lm(**inputs).logits, labels)
        decoder, head = self.split
        hidden = decoder(**inputs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = head(hidden[keep])
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def forward_loss_sum(model, batch: dict, device: torch.device) -> torch.Tensor:
    """`model` is a causal LM, a LabelLoss, or DDP around a LabelLoss (the training forward under torchrun)."""
    loss_module = model if isinstance(model, (LabelLoss, torch.nn.parallel.DistributedDataParallel)) else LabelLoss(model)
    with autocast(device):
        return loss_module(labels=batch["labels"].to(device), **model_inputs(batch, device))


@torch.no_grad()
def evaluate(model, batches: list[dict], device: torch.device) -> float:
    """Mean loss per label token, in eval mode (dropout off), train mode restored after."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        total += forward_loss_sum(model, batch, device).item()
        count += count_label_tokens(batch)
    model.train(was_training)
    if count == 0:
        raise TrainerError("validation set has no label tokens")
    return total / count


def train_step(model, optimizer, scheduler, micro_batches: list[dict], device: torch.device, clip: float | None, step: int,
               dist: distributed.DistInfo | None = None) -> tuple[float, float]:
    """One optimizer step over an accumulation window; returns (loss per label token, grad norm).

    Each micro-batch's summed loss is divided by the label tokens of the whole window (on
    all ranks under DDP), so 1 x accumulation 4, 4 x accumulation 1 and 2 processes x 2
    produce the same gradient. DDP averages gradients over ranks, hence the x world_size.
    """
    world = dist.world_size if dist is not None else 1
    n_labels = distributed.reduce_sum(sum(count_label_tokens(b) for b in micro_batches), dist)
    if n_labels == 0:
        raise TrainerError(f"step {step}: every label in the batch is masked (no assistant tokens after truncation)")
    window_loss = torch.zeros((), dtype=torch.float64, device=device)
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or world == 1 else model.no_sync():  # DDP: all-reduce once per window
            loss = forward_loss_sum(model, batch, device) / n_labels
            (loss * world if world > 1 else loss).backward()
        window_loss += loss.detach().double()
    window_loss = distributed.reduce_sum(window_loss.item(), dist)  # one sync per step, not per micro-batch
    if not math.isfinite(window_loss):
        optimizer.zero_grad(set_to_none=True)
        raise AndonStop(step, "loss", window_loss)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        raise AndonStop(step, "gradient norm", grad_norm.item())
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return window_loss, grad_norm.item()


def train(cfg: Config, output: Path, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Run (or resume) one experiment; returns metrics.json's content."""
    paths = ExperimentPaths(Path(output))
    env = distributed.from_env()  # under torchrun: this process's rank; else rank 0 of 1
    if cfg is not None:
        distributed.check_batch_size(cfg.training.batch_size, env.world_size)  # before anything is written
    if env.is_main:
        cfg = prepare_directory(paths, cfg, resume=resume, overwrite=overwrite)
        setup_logging(paths.log)
    elif cfg is None or resume:
        cfg = load_config(paths.config)  # rank 0 checks it against the saved one
    t = cfg.training
    device, device_warning = resolve_device(t.device)
    device = distributed.setup(env, device, t.batch_size)
    seed_everything(t.seed, device)
    log.info("experiment %s: mode=%s device=%s seed=%d", paths.root, t.mode, device, t.seed)

    # ---- data and model
    train_records = load_jsonl(cfg.data.train, cfg.data.max_train_samples)
    val_records = load_jsonl(cfg.data.validation, cfg.data.max_validation_samples)
    if not env.is_main:
        distributed.barrier(env)  # wait for rank 0 to build and save the base model (presets)
    base = prepare_base(cfg, train_records, paths.root)
    if env.is_main:
        distributed.barrier(env)
    tokenizer = base.tokenizer
    model = load_for_training(cfg, base, device)
    assert_on_device(model, device)
    ddp_model = distributed.wrap(LabelLoss(model), env, device)  # the training forward; everything else uses `model`
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("model: %s; trainable %d of %d parameters", base.description, n_trainable, n_total)

    pretrain = t.mode == "pretrain"
    train_examples, dropped = build_examples(tokenizer, train_records, cfg.data.max_seq_len, pretrain, cfg.data.packing)
    val_examples, val_dropped = build_examples(tokenizer, val_records, cfg.data.max_seq_len, pretrain)
    if dropped or val_dropped:
        log.warning("dropped %d train / %d validation examples with no label token within max_seq_len=%d",
                    dropped, val_dropped, cfg.data.max_seq_len)
    if cfg.data.packing:
        n_examples = len(train_examples)
        train_examples = pack_examples(train_examples, cfg.data.max_seq_len)
        log.info("packing: %d examples into %d rows of at most %d tokens", n_examples, len(train_examples), cfg.data.max_seq_len)
    for finding in diagnose(cfg, token_lengths=[len(e.input_ids) for e in train_examples], world_size=env.world_size):
        if finding.level == "error":
            raise TrainerError(f"{finding.rule} ({RULES[finding.rule]}): {finding.message}")
        if finding.level == "warn":
            log.warning("hyperparameter rule %s (%s): %s", finding.rule, RULES[finding.rule], finding.message)
    stream = BatchStream(train_examples, t.batch_size, t.seed, tokenizer.pad_token_id, env.rank, env.world_size)
    val_batches = eval_batches(val_examples, t.batch_size, tokenizer.pad_token_id)
    steps_per_epoch = -(-stream.batches_per_epoch // t.gradient_accumulation_steps)
    total_steps = t.max_steps or t.epochs * steps_per_epoch

    # ---- optimizer and schedule (counted in optimizer steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, betas=(0.9, 0.999), weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(total_steps, t.warmup_ratio, t.min_lr_ratio))

    # ---- state, fresh or resumed
    store = MetricStore(paths.store if env.is_main else ":memory:")  # only rank 0 writes the directory
    step, best_val, best_step, initial_val, tokens_seen, elapsed = 0, math.inf, None, None, 0, 0.0
    removed = ckpt.clean_partial(paths.checkpoints) if env.is_main else []
    if removed:
        log.warning("removed partial checkpoint writes left by an interrupted run: %s", ", ".join(removed))
    if resume:
        last = ckpt.latest_valid(paths.checkpoints)
        if last is None:
            log.warning("--resume: no checkpoint yet in %s; starting from step 0", paths.checkpoints)
        else:
            state = ckpt.load_state(last)
            ckpt.load_weights(model, last)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            stream.restore(state["data_position"])
            rngs = state.get("rng_per_rank", [state["rng"]])
            if len(rngs) != env.world_size:
                raise TrainerError(f"--resume: {last} was written by {len(rngs)} process(es), this run has "
                                   f"{env.world_size}; an exact resume needs the same torchrun world size")
            set_rng_state(rngs[env.rank])
            step, best_val, best_step = state["step"], state["best_val_loss"], state["best_step"]
            initial_val, tokens_seen, elapsed = state["initial_val_loss"], state["tokens_seen"], state["elapsed"]
            store.truncate_after(step)
            log.info("resumed from %s (step %d of %d)", last, step, total_steps)
    store.set_meta(run_name=cfg.name, total_steps=total_steps, epochs=t.epochs, steps_per_epoch=steps_per_epoch,
                   model=base.description, mode=t.mode, device=str(device), random_init=base.random_init,
                   status="running", started_at=time.time(), pid=os.getpid())
    if initial_val is None:
        initial_val = evaluate(model, val_batches, device)
        store.log_eval(0, initial_val)
        log.info("step 0: validation loss %.4f", initial_val)

    # ---- the loop
    status, stop_reason, guard, step_rates, last_saved = "finished", None, None, [], None
    try:
        model.train()
        while step < total_steps:
            started = time.perf_counter()
            micro = [stream.next_batch() for _ in range(t.gradient_accumulation_steps)]
            loss, grad_norm = train_step(ddp_model, optimizer, scheduler, micro, device, t.gradient_clipping, step + 1, env)
            step += 1
            seconds = time.perf_counter() - started
            tokens = distributed.reduce_sum(sum(count_tokens(b) for b in micro), env)
            tokens_seen, elapsed = tokens_seen + tokens, elapsed + seconds
            step_rates.append(tokens / seconds)
            lr = scheduler.get_last_lr()[0]
            store.log_step(step, stream.fractional_epoch(), loss, lr, grad_norm, tokens, tokens / seconds, elapsed)
            if step % t.log_steps == 0 or step == total_steps:
                log.info("step %d/%d loss %.4f lr %.2e grad_norm %.3f %.0f tok/s", step, total_steps, loss, lr, grad_norm, tokens / seconds)
            if store.hardware_due() or step == total_steps:
                store.log_hardware(**hardware.snapshot())
            if env.is_main and store.sample_due(step, t.sample_steps, t.eval_steps):
                from trainer.generate import sample_for_monitor

                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # a peek leaves training's RNG alone
                    store.log_sample(step, *sample_for_monitor(model.eval(), tokenizer, val_records[0], device))

            improved = False
            if step % t.eval_steps == 0 or step == total_steps:
                val = evaluate(model, val_batches, device)
                store.log_eval(step, val)
                log.info("step %d: validation loss %.4f", step, val)
                improved = val < best_val
                if improved:
                    best_val, best_step = val, step
            if step % t.save_steps == 0 or step == total_steps or improved:  # the same decision on every rank
                rngs = distributed.gather_objects(rng_state(), env)  # each rank's dropout stream is its own
            if env.is_main and (step % t.save_steps == 0 or step == total_steps or improved):
                state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": rngs[0], "rng_per_rank": rngs, "data_position": stream.position(), "best_val_loss": best_val,
                         "best_step": best_step, "initial_val_loss": initial_val, "tokens_seen": tokens_seen,
                         "elapsed": elapsed}
                last_saved = ckpt.save_checkpoint(paths.checkpoints, step, model, state)
                if improved:
                    ckpt.update_best(paths.checkpoints, last_saved)
                ckpt.rotate(paths.checkpoints, t.max_checkpoints)
    except AndonStop as stop:
        status, stop_reason, guard = "stopped_by_guard", str(stop), stop
        log.error("%s", stop)
    except KeyboardInterrupt as stop:
        status, stop_reason, guard = "interrupted", "KeyboardInterrupt", stop
        log.error("interrupted at step %d; the last complete checkpoint is kept", step)
    finally:
        store.end_run(status, stop_reason)  # "failed" when an exception is propagating

    # ---- results
    distributed.barrier(env)  # rank 0's last checkpoint is complete before anyone lists them
    final = ckpt.list_checkpoints(paths.checkpoints)
    final_checkpoint = final[-1] if final else None
    curve = store.eval_curve()
    final_val = curve[-1][1] if curve else None
    converged = None if t.target_val_loss is None or final_val is None else final_val <= t.target_val_loss
    metrics = {
        "name": cfg.name, "status": status, "stop_reason": stop_reason, "mode": t.mode, "device": str(device),
        "device_warning": device_warning, "world_size": env.world_size, "model": base.description, "random_init": base.random_init,
        "total_parameters": n_total, "trainable_parameters": n_trainable,
        "steps": step, "total_steps": total_steps, "epochs": stream.fractional_epoch(),
        "train_examples": len(train_examples), "validation_examples": len(val_examples),
        "dropped_examples": dropped + val_dropped, "tokens_seen": tokens_seen, "train_seconds": elapsed,
        "tokens_per_s_median": statistics.median(step_rates) if step_rates else None,
        "initial_val_loss": initial_val, "final_val_loss": final_val, "best_val_loss": best_val if best_step else None,
        "best_step": best_step, "final_train_loss": (store.loss_curve() or [(0, None)])[-1][1],
        "target_val_loss": t.target_val_loss, "converged": converged,
        "final_checkpoint": str(final_checkpoint) if final_checkpoint else None,
        "best_checkpoint": str(paths.checkpoints / "best") if (paths.checkpoints / "best").is_dir() else None,
    }
    if env.is_main:
        write_json_atomic(paths.metrics, metrics)
        write_lock(paths, cfg, str(device), final_checkpoint)
    store.close()
    del ddp_model  # DDP's reducer must go before its process group: destroyed after, gloo can hang
    distributed.shutdown(env)
    if guard is not None:
        raise guard
    return metrics

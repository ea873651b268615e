"""The training recipe: `train()` reads top to bottom as setup, the loop, finish.

Config in, experiment directory out. `setup` builds what the loop needs (the config,
resolved once; device, seed, data, model; the optimizer and schedule from
`build_optimizer`, which the checks use too); the loop steps, evaluates, checkpoints,
reports to the monitor and stops on its guards; `finish` writes metrics.json and the
lock file. Checkpoint I/O, the metric store and model loading live in their own modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer import checkpoint as ckpt
from trainer import classify, distributed, hardware
from trainer.checkpoint import TrainingState
from trainer.config import Config, TrainingConfig
from trainer.data import BatchStream, TrainingData, build_examples, count_label_tokens, count_tokens, eval_batches, load_jsonl
from trainer.errors import AndonStop, TrainerError
from trainer.experiment import ExperimentPaths, prepare_directory, resolve_config, setup_logging, write_lock
from trainer.files import write_json_atomic
from trainer.generate import sample_for_monitor
from trainer.guards import DivergenceStop, DivergenceWatch
from trainer.hparams import enforce
from trainer.lm_loss import LabelLoss
from trainer.models import BaseModel, classifier_base, load_for_training, prepare_base
from trainer.monitor.store import MetricStore
from trainer.packing import pack_examples
from trainer.runtime import (
    CPU_BF16_FLAGS,
    assert_on_device,
    autocast,
    compute_dtype,
    peak_vram_mb,
    reset_peak_vram,
    resolve_device,
    rng_state,
    seed_everything,
    set_precision,
    set_rng_state,
)

log = logging.getLogger("trainer")


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


def forward_loss_sum(model, batch: dict, device: torch.device) -> torch.Tensor:
    """`model` is a causal LM, a LabelLoss or ClassifyLoss, or DDP around one (the training forward under torchrun)."""
    wrapped = isinstance(model, (LabelLoss, classify.ClassifyLoss, torch.nn.parallel.DistributedDataParallel))
    loss_module = model if wrapped else LabelLoss(model)
    targets = batch["targets"] if "targets" in batch else batch["labels"]  # a classification batch (trainer.classify), or tokens
    with autocast(device):
        return loss_module(targets.to(device), **model_inputs(batch, device))


def count_targets(batch: dict) -> int:
    """What a batch's summed loss is divided by: its label tokens, or a classification batch's targets (trainer.classify)."""
    return batch["targets"].numel() if "targets" in batch else count_label_tokens(batch)


@torch.no_grad()
def evaluate(model, batches: list[dict], device: torch.device) -> float:
    """Mean loss per label token, in eval mode (dropout off), train mode restored after."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        total += forward_loss_sum(model, batch, device).item()
        count += count_targets(batch)
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
    n_labels = distributed.reduce_sum(sum(count_targets(b) for b in micro_batches), dist)
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


def build_optimizer(model: torch.nn.Module, training: TrainingConfig, total_steps: int):
    """AdamW over the trainable parameters and its cosine schedule (counted in optimizer steps).

    The one construction of both: `train` uses it, and so do the checks that step a model.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training.learning_rate, betas=(0.9, 0.999), weight_decay=training.weight_decay)
    schedule = cosine_schedule(total_steps, training.warmup_ratio, training.min_lr_ratio)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters."""
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------ setup


@dataclass
class TrainingRun:
    """Everything `setup` built for one run: what the loop and `finish` read."""

    cfg: Config
    paths: ExperimentPaths
    env: distributed.DistInfo
    device: torch.device
    device_warning: str | None
    base: BaseModel
    model: torch.nn.Module  # the (peft) model: evaluation, checkpoints, samples
    ddp_model: torch.nn.Module | None  # LabelLoss(model) or ClassifyLoss(model), in DDP under torchrun: the training forward
    data: TrainingData
    total_steps: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    store: MetricStore
    divergence: DivergenceWatch
    compute_dtype: str  # what training.precision resolved to on this device: "bf16" or "fp32"
    state: TrainingState = field(default_factory=TrainingState)


def setup(given: Config | None, output: Path, *, resume: bool, overwrite: bool) -> TrainingRun:
    """The config (resolved once, the same on every rank), device, seed, data, model, optimizer, state."""
    paths, env = ExperimentPaths(Path(output)), distributed.from_env()  # under torchrun: this process's rank; else 0 of 1
    cfg = resolve_config(paths, given, resume=resume)
    t = cfg.training
    distributed.check_batch_size(t.batch_size, env.world_size)  # before anything is written
    if t.task == "classify" and env.world_size > 1:
        raise TrainerError(f"training.task=classify runs in one process for now; torchrun started {env.world_size}")
    if env.is_main:
        prepare_directory(paths, cfg, resume=resume, overwrite=overwrite)
        setup_logging(paths.log)
    device, device_warning = resolve_device(t.device)
    device = distributed.setup(env, device)
    seed_everything(t.seed, device)
    set_precision(t.precision)
    reset_peak_vram(device)
    log.info("experiment %s: mode=%s device=%s seed=%d precision=%s: %s compute", paths.root, t.mode, device, t.seed,
             t.precision, compute_dtype(device))
    if t.precision == "bf16-where-native" and compute_dtype(device) == "fp32":
        log.warning("training.precision bf16-where-native: this CPU has none of %s, so the forward computes in fp32",
                    "/".join(CPU_BF16_FLAGS))

    # generation pairs (trainer.data) or labelled texts (trainer.classify)
    d, read = cfg.data, load_jsonl if t.task == "generate" else functools.partial(classify.load_records, classes=cfg.classify)
    train_records, val_records = read(d.train, d.max_train_samples), read(d.validation, d.max_validation_samples)
    base, model = load_model(cfg, paths, env, train_records, device)
    data = build_data(cfg, base.tokenizer, train_records, val_records, env)
    steps_per_epoch = -(-data.stream.batches_per_epoch // t.gradient_accumulation_steps)
    total_steps = t.max_steps or t.epochs * steps_per_epoch
    optimizer, scheduler = build_optimizer(model, t, total_steps)
    store = MetricStore(paths.store if env.is_main else ":memory:")  # only rank 0 writes the directory
    forward = classify.ClassifyLoss(model, data.class_weights, cfg.classify.multi_label) if t.task == "classify" else LabelLoss(model)
    ddp_model = distributed.wrap(forward, env, device)  # the training forward; everything else uses `model`
    run = TrainingRun(cfg, paths, env, device, device_warning, base, model, ddp_model, data, total_steps, optimizer, scheduler, store,
                      DivergenceWatch(t.divergence_factor, t.divergence_window), compute_dtype(device))

    removed = ckpt.clean_partial(paths) if env.is_main else []
    if removed:
        log.warning("removed partial checkpoint writes left by an interrupted run: %s", ", ".join(removed))
    if resume:
        run.state = resume_from_checkpoint(run)
    store.set_meta(run_name=cfg.name, total_steps=total_steps, epochs=t.epochs, steps_per_epoch=steps_per_epoch,
                   model=base.description, mode=t.mode, device=str(device), random_init=base.random_init,
                   status="running", started_at=time.time(), pid=os.getpid())
    for step, loss in distributed.gather_objects(store.loss_curve(), env)[0]:  # resumed: the guard sees rank 0's steps, on every rank
        run.divergence.observe(step, loss)
    return run


def load_model(cfg: Config, paths: ExperimentPaths, env: distributed.DistInfo, train_records: list[dict],
               device: torch.device) -> tuple[BaseModel, torch.nn.Module]:
    """The base model's source (rank 0 builds and saves a preset first) and the model to train, on `device`."""
    if not env.is_main:
        distributed.barrier(env)  # wait for rank 0 to build and save the base model (presets)
    base = prepare_base(cfg, train_records, paths.base_model)
    if cfg.training.task == "classify":  # the base's config with the classification fields (one process only: see setup)
        base = classifier_base(base, cfg.classify, paths.classifier_base)
    if env.is_main:
        distributed.barrier(env)
    model = load_for_training(cfg, base, device)
    assert_on_device(model, device)
    total, trainable = parameter_counts(model)
    log.info("model: %s; trainable %d of %d parameters", base.description, trainable, total)
    return base, model


def build_data(cfg: Config, tokenizer, train_records: list[dict], val_records: list[dict], env: distributed.DistInfo) -> TrainingData:
    """Encode (assistant-only labels), pack if asked, check the hyperparameter rules on the real lengths, batch."""
    if cfg.training.task == "classify":  # labelled texts: trainer.classify encodes, weighs and batches them
        return classify.build_data(cfg, tokenizer, train_records, val_records, env.world_size)
    t, d = cfg.training, cfg.data
    pretrain = t.mode == "pretrain"
    train_examples, dropped = build_examples(tokenizer, train_records, d.max_seq_len, pretrain, d.packing)
    val_examples, val_dropped = build_examples(tokenizer, val_records, d.max_seq_len, pretrain)
    if dropped or val_dropped:
        log.warning("dropped %d train / %d validation examples with no label token within max_seq_len=%d",
                    dropped, val_dropped, d.max_seq_len)
    if d.packing:
        n_examples = len(train_examples)
        train_examples = pack_examples(train_examples, d.max_seq_len)
        log.info("packing: %d examples into %d rows of at most %d tokens", n_examples, len(train_examples), d.max_seq_len)
    enforce(cfg, [len(e.input_ids) for e in train_examples], env.world_size)
    stream = BatchStream(train_examples, t.batch_size, t.seed, tokenizer.pad_token_id, env.rank, env.world_size)
    return TrainingData(stream, eval_batches(val_examples, t.batch_size, tokenizer.pad_token_id), val_records,
                        len(train_examples), len(val_examples), dropped + val_dropped)


def resume_from_checkpoint(run: TrainingRun) -> TrainingState:
    """The newest checkpoint's progress, with weights, optimizer, schedule, data position and this rank's RNG put back."""
    last = ckpt.latest_valid(run.paths)
    if last is None:
        log.warning("--resume: no checkpoint yet in %s; starting from step 0", run.paths.checkpoints)
        return TrainingState()
    state = ckpt.load_state(last)
    ckpt.load_weights(run.model, last)
    run.optimizer.load_state_dict(state.optimizer)
    run.scheduler.load_state_dict(state.scheduler)
    run.data.stream.restore(state.data_position)
    if len(state.rng_per_rank) != run.env.world_size:
        raise TrainerError(f"--resume: {last} was written by {len(state.rng_per_rank)} process(es), this run has "
                           f"{run.env.world_size}; an exact resume needs the same torchrun world size")
    set_rng_state(state.rng_per_rank[run.env.rank])
    run.store.truncate_after(state.step)
    log.info("resumed from %s (step %d of %d)", last, state.step, run.total_steps)
    return dataclasses.replace(state, optimizer={}, scheduler={})  # the loop keeps the counters; the live objects hold the rest


# ------------------------------------------------------------------------ the recipe


def train(cfg: Config | None, output: Path, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Run (or resume) one experiment; returns metrics.json's content.

    `cfg` may be None with `resume`: the experiment's saved config is used.
    """
    run = setup(cfg, output, resume=resume, overwrite=overwrite)
    t, state, store = run.cfg.training, run.state, run.store
    status, stop_reason, guard, step_rates = "finished", None, None, []
    try:
        if state.initial_val_loss is None:
            state.initial_val_loss = validation_loss(run)
        run.model.train()
        while state.step < run.total_steps:
            started = time.perf_counter()
            micro = [run.data.stream.next_batch() for _ in range(t.gradient_accumulation_steps)]
            loss, grad_norm = train_step(run.ddp_model, run.optimizer, run.scheduler, micro, run.device, t.gradient_clipping,
                                         state.step + 1, run.env)
            state.step += 1
            seconds = time.perf_counter() - started
            tokens = distributed.reduce_sum(sum(count_tokens(b) for b in micro), run.env)
            state.tokens_seen, state.elapsed = state.tokens_seen + tokens, state.elapsed + seconds
            step_rates.append(tokens / seconds)
            report_step(run, loss, grad_norm, tokens, seconds)
            watch_divergence(run, loss)

            last, improved = state.step == run.total_steps, False
            if state.step % t.eval_steps == 0 or last:
                val = validation_loss(run)
                improved = val < state.best_val_loss
                if improved:
                    state.best_val_loss, state.best_step = val, state.step
            if state.step % t.save_steps == 0 or last or improved:  # the same decision on every rank
                save_checkpoint(run, improved)
    except AndonStop as stop:  # the guards: a non-finite loss, gradient norm or validation loss; divergence when configured
        status, stop_reason, guard = "stopped_by_guard", str(stop), stop
        log.error("%s", stop)
    except KeyboardInterrupt as stop:
        status, stop_reason, guard = "interrupted", "KeyboardInterrupt", stop
        log.error("interrupted at step %d; the last complete checkpoint is kept", state.step)
    finally:
        store.end_run(status, stop_reason)  # "failed" when an exception is propagating
        set_precision("auto")  # the process-wide default again, for whatever runs next in this process

    metrics = finish(run, status, stop_reason, step_rates)
    if guard is not None:
        raise guard
    return metrics


def validation_loss(run: TrainingRun) -> float:
    """Evaluate at the current step; a non-finite loss stops the run (exit 3) before it is logged or checkpointed."""
    if run.cfg.training.task == "classify":  # and the classifier's metrics (trainer.classify.classification_metrics)
        val, scores = classify.evaluate(run.model, run.data, run.device, run.cfg.classify)
    else:
        val, scores = evaluate(run.model, run.data.val_batches, run.device), None
    if not math.isfinite(val):
        raise AndonStop(run.state.step, "validation loss", val)
    run.store.log_eval(run.state.step, val)
    log.info("step %d: validation loss %.4f", run.state.step, val)
    if scores is not None:
        run.store.log_eval_metrics(run.state.step, scores)
        log.info("step %d: %s", run.state.step, classify.summary(scores))
    return val


def watch_divergence(run: TrainingRun, loss: float) -> None:
    """Record the first divergence (log and metrics.json); end the run there if `training.stop_on_divergence`."""
    finding = run.divergence.observe(run.state.step, loss)
    if finding is None:
        return
    log.warning("step %d: training loss diverging: mean of the last %d steps %.4g > %g x its lowest %.4g", finding["step"],
                finding["window"], finding["window_mean"], finding["factor"], finding["lowest_window_mean"])
    if run.cfg.training.stop_on_divergence:
        raise DivergenceStop(run.state.step, finding)


def report_step(run: TrainingRun, loss: float, grad_norm: float, tokens: int, seconds: float) -> None:
    """The step's row in the metric store and its log line; hardware readings and a sample for the monitor when due."""
    t, step, store = run.cfg.training, run.state.step, run.store
    lr = run.scheduler.get_last_lr()[0]
    store.log_step(step, run.data.stream.fractional_epoch(), loss, lr, grad_norm, tokens, tokens / seconds, run.state.elapsed)
    if step % t.log_steps == 0 or step == run.total_steps:
        log.info("step %d/%d loss %.4f lr %.2e grad_norm %.3f %.0f tok/s", step, run.total_steps, loss, lr, grad_norm, tokens / seconds)
    if store.hardware_due() or step == run.total_steps:
        store.log_hardware(**hardware.snapshot())
    if run.env.is_main and t.task == "generate" and store.sample_due(step, t.sample_steps, t.eval_steps):  # classifiers generate nothing
        with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):  # a peek leaves training's RNG alone
            store.log_sample(step, *sample_for_monitor(run.model.eval(), run.base.tokenizer, run.data.val_records[0], run.device))


def save_checkpoint(run: TrainingRun, improved: bool) -> None:
    """Every rank hands over its RNG state; rank 0 writes the checkpoint, copies it to best if `improved`, rotates."""
    rngs = distributed.gather_objects(rng_state(), run.env)  # each rank's dropout stream is its own
    if not run.env.is_main:
        return
    state = dataclasses.replace(run.state, optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                                data_position=run.data.stream.position(), rng_per_rank=rngs)
    saved = ckpt.save_checkpoint(run.paths, run.model, state)
    if improved:
        ckpt.update_best(run.paths, saved)
    ckpt.rotate(run.paths, run.cfg.training.max_checkpoints)


def finish(run: TrainingRun, status: str, stop_reason: str | None, step_rates: list[float]) -> dict:
    """metrics.json and the lock file (rank 0 writes them), then leave the process group; returns the metrics."""
    t, state, paths, store = run.cfg.training, run.state, run.paths, run.store
    distributed.barrier(run.env)  # rank 0's last checkpoint is complete before anyone lists them
    final = paths.step_checkpoints()
    final_checkpoint = final[-1] if final else None
    curve = store.eval_curve()
    final_val = curve[-1][1] if curve else None
    converged = None if t.target_val_loss is None or final_val is None else final_val <= t.target_val_loss
    n_total, n_trainable = parameter_counts(run.model)
    metrics = {
        "name": run.cfg.name, "status": status, "stop_reason": stop_reason, "mode": t.mode, "device": str(run.device),
        "device_warning": run.device_warning, "world_size": run.env.world_size, "model": run.base.description,
        "random_init": run.base.random_init, "total_parameters": n_total, "trainable_parameters": n_trainable,
        "steps": state.step, "total_steps": run.total_steps, "epochs": run.data.stream.fractional_epoch(),
        "train_examples": run.data.train_examples, "validation_examples": run.data.validation_examples,
        "dropped_examples": run.data.dropped, "tokens_seen": state.tokens_seen, "train_seconds": state.elapsed,
        "tokens_per_s_median": statistics.median(step_rates) if step_rates else None,
        "initial_val_loss": state.initial_val_loss, "final_val_loss": final_val,
        "best_val_loss": state.best_val_loss if state.best_step else None, "best_step": state.best_step,
        "final_train_loss": (store.loss_curve() or [(0, None)])[-1][1],
        "target_val_loss": t.target_val_loss, "converged": converged, "divergence": run.divergence.found,
        "precision": t.precision, "compute_dtype": run.compute_dtype, "peak_vram_mb": peak_vram_mb(run.device),
        "final_checkpoint": str(final_checkpoint) if final_checkpoint else None,
        "best_checkpoint": str(paths.best) if paths.best.is_dir() else None,
    }
    if t.task == "classify":  # the last evaluation's metrics, as final_val_loss is the last validation loss
        metrics.update(classify.final_metrics(run.cfg.classify, run.data.class_weights, store.eval_metrics()))
    if run.env.is_main:
        write_json_atomic(paths.metrics, metrics)
        write_lock(paths, run.cfg, str(run.device), final_checkpoint)
    store.close()
    run.ddp_model = None  # DDP's reducer must go before its process group: destroyed after, gloo can hang
    distributed.shutdown(run.env)
    return metrics

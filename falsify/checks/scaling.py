"""Tier-2 checks for sequence packing and DDP: the same loss as the plain path, nothing leaking across samples.

Each check is an experiment on the trainer's own code (trainer.packing, trainer.train's
`model_inputs` and `token_loss_sum`, `python -m trainer train` under torchrun) that
returns a plain dict of what it observed; the checks give them a contract-facing name
and a Verdict. The experiments take a planted `defect` where a test needs to show they
can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check

# ------------------------------------------------------------------ packing experiments


def _random_examples(n: int, vocab: int, seed: int, min_len: int = 6, max_len: int = 40) -> list:
    """Examples with a masked prompt of random length and labels after it."""
    import torch

    from trainer.data import IGNORE, Example

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        ids = torch.randint(0, vocab, (length,), generator=g).tolist()
        out.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def _model_inputs(batch: dict, defect: str | None) -> dict:
    """What the trainer feeds the model for a packed batch, or a planted defect of it."""
    import torch

    from trainer.train import model_inputs

    inputs = model_inputs(batch, torch.device("cpu"))
    if defect == "no_attention_reset":  # keep the 2D mask: transformers then builds a plain causal mask
        inputs["attention_mask"] = batch["attention_mask"]
    elif defect == "no_position_reset":  # positions run through the row: no boundary is visible
        inputs.pop("position_ids")
    elif defect == "with_cache":  # use_cache=True: transformers skips packed-sequence detection
        inputs["use_cache"] = True
    elif defect is not None:
        raise ValueError(f"unknown defect {defect!r}")
    return inputs


def _packing_model(attn_implementation: str, seed: int):
    """A small random Qwen2 (the tiny preset's shape, 512-token vocab): enough to expose any mask bug."""
    return fixtures.tiny_model(seed, attn_implementation=attn_implementation, vocab_size=512)


def packed_vs_unpacked_loss(n_examples: int = 12, max_seq_len: int = 96, attn_implementation: str = "sdpa",
                            seed: int = 0, rtol: float = 1e-5, defect: str | None = None, model=None) -> dict:
    """Packed loss sum == sum of per-sample losses (each sample alone, no padding), same label count."""
    import torch

    from trainer.data import IGNORE, collate
    from trainer.lm_loss import token_loss_sum
    from trainer.packing import pack_examples

    model = model or _packing_model(attn_implementation, seed)
    examples = _random_examples(n_examples, model.config.vocab_size, seed)
    rows = pack_examples(examples, max_seq_len)
    batch = collate(rows, pad_id=0)
    with torch.no_grad():
        unpacked = sum(float(token_loss_sum(model(input_ids=torch.tensor([ex.input_ids]), use_cache=False).logits,
                                            torch.tensor([ex.labels]))) for ex in examples)
        packed = float(token_loss_sum(model(**_model_inputs(batch, defect)).logits, batch["labels"]))
    labels_unpacked = sum(int((torch.tensor(ex.labels[1:]) != IGNORE).sum()) for ex in examples)
    labels_packed = int((batch["labels"][:, 1:] != IGNORE).sum())
    rel = abs(packed - unpacked) / max(abs(unpacked), 1e-12)
    return {"passed": rel <= rtol and labels_packed == labels_unpacked, "packed_loss_sum": packed,
            "unpacked_loss_sum": unpacked, "relative_difference": rel, "rtol": rtol, "label_tokens_packed": labels_packed,
            "label_tokens_unpacked": labels_unpacked, "examples": n_examples, "rows": len(rows),
            "attn_implementation": model.config._attn_implementation, "defect": defect}


def cross_boundary_attention(len_a: int = 20, len_b: int = 16, attn_implementation: str = "sdpa", seed: int = 0,
                             atol: float = 1e-6, defect: str | None = None, model=None) -> dict:
    """Changing sample A's tokens in a packed row [A | B] must leave B's logits unchanged,
    and B's logits must equal those of B alone (positions restart, nothing leaks in)."""
    import torch

    from trainer.data import Example, collate
    from trainer.packing import concat_row

    model = model or _packing_model(attn_implementation, seed)
    vocab = model.config.vocab_size
    a, b = _random_examples(2, vocab, seed, min_len=min(len_a, len_b), max_len=max(len_a, len_b))
    a, b = Example(a.input_ids[:len_a], a.labels[:len_a]), Example(b.input_ids[:len_b], b.labels[:len_b])
    g = torch.Generator().manual_seed(seed + 1)
    a_changed = Example(((torch.tensor(a.input_ids) + 1 + torch.randint(0, vocab - 1, (len_a,), generator=g)) % vocab).tolist(), a.labels)

    def logits_of_b(first: Example) -> torch.Tensor:
        batch = collate([concat_row([first, b])], pad_id=0)
        return model(**_model_inputs(batch, defect)).logits[0, len(first.input_ids):]

    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b.input_ids]), use_cache=False).logits[0]
        base = logits_of_b(a)
        leak = float((logits_of_b(a_changed) - base).abs().max())
    vs_alone = float((base - alone).abs().max())
    return {"passed": leak <= atol and vs_alone <= atol, "max_abs_change_of_b_logits": leak,
            "max_abs_diff_b_packed_vs_alone": vs_alone, "atol": atol,
            "attn_implementation": model.config._attn_implementation, "defect": defect}


# ------------------------------------------------------------------ DDP experiments


def _losses(experiment: Path) -> list[tuple[int, float]]:
    from trainer.experiment import ExperimentPaths
    from trainer.monitor.store import read_curves

    return read_curves(ExperimentPaths(experiment).store).loss


def _run_train(config_file: Path, output: Path, nproc: int, extra: list[str] = (), timeout: float = 600) -> None:
    """`python -m trainer train` (nproc 1) or `torchrun --nproc_per_node N -m trainer train`; raises on failure."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", "trainer", "train", "--config", str(config_file), "--output", str(output), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def _ddp_config(name: str, train: str, validation: str, path: Path, lora: dict | None = None, **training) -> Path:
    """A tiny-preset LoRA config for the DDP experiments (CPU, seed 7), validated and saved to `path`."""
    from trainer.config import load_config, save_config

    raw = {"name": name, "model": {"preset": "tiny"}, "lora": lora or {},
           "data": {"train": train, "validation": validation, "max_seq_len": 96, "max_validation_samples": 8},
           "training": {"mode": "lora", "learning_rate": 2e-3, "device": "cpu", "seed": 7, **training}}
    save_config(load_config(data=raw), path)
    return path


def ddp_equivalence(train: str, validation: str, workdir: str, batch_per_rank: int = 2, world_size: int = 2,
                    max_steps: int = 4, mode: str = "lora", rtol: float = 1e-4, defect: str | None = None) -> dict:
    """torchrun with `world_size` processes x `batch_per_rank` vs one process x the whole batch.

    Both runs use one config (batch_size = batch_per_rank x world_size, LoRA dropout 0 so
    that no random mask differs between the two layouts): same optimizer step count and
    the same loss curve within `rtol` (float summation order is the only difference).
    Planted defect "half_batch": the single process trains on batch_per_rank only.
    """
    if defect not in (None, "half_batch"):
        raise ValueError(f"unknown defect {defect!r}")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    steps = {"mode": mode, "max_steps": max_steps, "save_steps": max_steps, "eval_steps": max_steps}
    no_dropout = {"dropout": 0.0}
    ddp_cfg = _ddp_config("ddp-equivalence", train, validation, work / "ddp.yaml", no_dropout,
                          batch_size=batch_per_rank * world_size, **steps)
    single_batch = batch_per_rank if defect == "half_batch" else batch_per_rank * world_size
    single_cfg = _ddp_config("ddp-equivalence", train, validation, work / "single.yaml", no_dropout, batch_size=single_batch, **steps)
    _run_train(ddp_cfg, work / "ddp", world_size, ["--overwrite"])
    _run_train(single_cfg, work / "single", 1, ["--overwrite"])
    ddp, single = _losses(work / "ddp"), _losses(work / "single")
    rel = max((abs(a[1] - b[1]) / abs(b[1]) for a, b in zip(ddp, single)), default=float("inf"))
    same_steps = [s for s, _ in ddp] == [s for s, _ in single] and len(ddp) == max_steps
    return {"passed": same_steps and rel <= rtol, "max_relative_loss_difference": rel, "rtol": rtol,
            "steps_ddp": len(ddp), "steps_single": len(single), "loss_ddp": [loss for _, loss in ddp],
            "loss_single": [loss for _, loss in single], "world_size": world_size, "batch_per_rank": batch_per_rank, "defect": defect}


def ddp_resume(train: str, validation: str, workdir: str, world_size: int = 2, batch_per_rank: int = 2, max_steps: int = 4) -> dict:
    """Under torchrun, N steps straight equal N/2 steps + `--resume` to N: identical adapter bytes."""
    from trainer.checkpoint import ADAPTER
    from trainer.experiment import ExperimentPaths
    from trainer.files import sha256_file

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = _ddp_config("ddp-resume", train, validation, work / "resume.yaml", max_steps=max_steps, batch_size=batch_per_rank * world_size,
                      save_steps=max_steps // 2, eval_steps=max_steps)
    straight, resumed = ExperimentPaths(work / "straight"), ExperimentPaths(work / "resumed")
    _run_train(cfg, straight.root, world_size, ["--overwrite"])
    # An interrupted run, without the waiting: a copy of the straight run cut back to its
    # step-N/2 checkpoint (what a kill after that save leaves), then resumed to N.
    if resumed.root.exists():
        shutil.rmtree(resumed.root)
    shutil.copytree(straight.root, resumed.root)
    for step_dir in resumed.step_checkpoints():
        if resumed.step_of(step_dir) > max_steps // 2:
            shutil.rmtree(step_dir)
    shutil.rmtree(resumed.best, ignore_errors=True)
    _run_train(cfg, resumed.root, world_size, ["--resume"])
    a = sha256_file(straight.checkpoint(max_steps) / ADAPTER)
    b = sha256_file(resumed.checkpoint(max_steps) / ADAPTER)
    loss_straight, loss_resumed = _losses(straight.root), _losses(resumed.root)
    return {"passed": a == b and loss_straight == loss_resumed, "adapter_sha256_straight": a, "adapter_sha256_resumed": b,
            "loss_straight": [loss for _, loss in loss_straight], "loss_resumed": [loss for _, loss in loss_resumed],
            "world_size": world_size}


# ------------------------------------------------------------------ the checks


@check("packed_loss_equals_unpacked")
def packed_loss_equals_unpacked(*, n_examples: int = 12, max_seq_len: int = 96, rtol: float = 1e-5) -> Verdict:
    """The loss sum over best-fit-decreasing packed rows equals the sum over the samples run alone."""
    r = packed_vs_unpacked_loss(n_examples=n_examples, max_seq_len=max_seq_len, rtol=rtol)
    return Verdict(r["passed"], r, f"packed {r['packed_loss_sum']:.5f} vs alone {r['unpacked_loss_sum']:.5f} "
                   f"(relative {r['relative_difference']:.2g}, allowed {rtol}); label tokens {r['label_tokens_packed']} vs "
                   f"{r['label_tokens_unpacked']}, {r['examples']} samples in {r['rows']} rows")


@check("packing_no_cross_attention")
def packing_no_cross_attention(*, atol: float = 1e-6) -> Verdict:
    """In a packed row [A | B], changing A leaves B's logits unchanged, and B's logits equal B alone."""
    r = cross_boundary_attention(atol=atol)
    return Verdict(r["passed"], r, f"B's logits moved by {r['max_abs_change_of_b_logits']:.3g} when A changed; "
                   f"differ from B alone by {r['max_abs_diff_b_packed_vs_alone']:.3g} (allowed {atol})")


@check("ddp_equals_single_process")
def ddp_equals_single_process(*, world_size: int = 2, batch_per_rank: int = 2, max_steps: int = 4, rtol: float = 1e-4) -> Verdict:
    """torchrun N x batch b gives the loss curve of 1 process x batch N*b, with the same number of steps."""
    data = fixtures.dataset_dir()
    r = ddp_equivalence(str(data / "train.jsonl"), str(data / "validation.jsonl"), tempfile.mkdtemp(prefix="rtf-ddp-"),
                        batch_per_rank=batch_per_rank, world_size=world_size, max_steps=max_steps, rtol=rtol)
    return Verdict(r["passed"], r, f"{world_size} x batch {batch_per_rank} vs 1 x batch {world_size * batch_per_rank}: "
                   f"{r['steps_ddp']} vs {r['steps_single']} steps, max relative loss difference "
                   f"{r['max_relative_loss_difference']:.2g} (allowed {rtol})")


@check("ddp_resume_exact")
def ddp_resume_exact(*, world_size: int = 2, max_steps: int = 4) -> Verdict:
    """Under torchrun, N steps straight equal N/2 steps + --resume: identical adapter bytes and loss curve."""
    data = fixtures.dataset_dir()
    r = ddp_resume(str(data / "train.jsonl"), str(data / "validation.jsonl"), tempfile.mkdtemp(prefix="rtf-ddp-"),
                   world_size=world_size, max_steps=max_steps)
    same = r["adapter_sha256_straight"] == r["adapter_sha256_resumed"]
    return Verdict(r["passed"], r, f"adapters {'identical' if same else 'DIFFER'}; loss curves "
                   f"{'equal' if r['loss_straight'] == r['loss_resumed'] else 'DIFFER'}")

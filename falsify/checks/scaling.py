"""Tier-2 checks for sequence packing and DDP: the same loss as the plain path, nothing leaking across samples.

The experiments themselves live next to the code they test (trainer.packing,
trainer.distributed); these checks give them a contract-facing name and a Verdict.
"""

from __future__ import annotations

import tempfile

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


@check("packed_loss_equals_unpacked")
def packed_loss_equals_unpacked(*, n_examples: int = 12, max_seq_len: int = 96, rtol: float = 1e-5) -> Verdict:
    """The loss sum over best-fit-decreasing packed rows equals the sum over the samples run alone."""
    from trainer.packing import packed_vs_unpacked_loss

    r = packed_vs_unpacked_loss(n_examples=n_examples, max_seq_len=max_seq_len, rtol=rtol)
    return Verdict(r["passed"], r, f"packed {r['packed_loss_sum']:.5f} vs alone {r['unpacked_loss_sum']:.5f} "
                   f"(relative {r['relative_difference']:.2g}, allowed {rtol}); label tokens {r['label_tokens_packed']} vs "
                   f"{r['label_tokens_unpacked']}, {r['examples']} samples in {r['rows']} rows")


@check("packing_no_cross_attention")
def packing_no_cross_attention(*, atol: float = 1e-6) -> Verdict:
    """In a packed row [A | B], changing A leaves B's logits unchanged, and B's logits equal B alone."""
    from trainer.packing import cross_boundary_attention

    r = cross_boundary_attention(atol=atol)
    return Verdict(r["passed"], r, f"B's logits moved by {r['max_abs_change_of_b_logits']:.3g} when A changed; "
                   f"differ from B alone by {r['max_abs_diff_b_packed_vs_alone']:.3g} (allowed {atol})")


@check("ddp_equals_single_process")
def ddp_equals_single_process(*, world_size: int = 2, batch_per_rank: int = 2, max_steps: int = 4, rtol: float = 1e-4) -> Verdict:
    """torchrun N x batch b gives the loss curve of 1 process x batch N*b, with the same number of steps."""
    from trainer.distributed import ddp_equivalence

    data = fixtures.dataset_dir()
    r = ddp_equivalence(str(data / "train.jsonl"), str(data / "validation.jsonl"), tempfile.mkdtemp(prefix="rtf-ddp-"),
                        batch_per_rank=batch_per_rank, world_size=world_size, max_steps=max_steps, rtol=rtol)
    return Verdict(r["passed"], r, f"{world_size} x batch {batch_per_rank} vs 1 x batch {world_size * batch_per_rank}: "
                   f"{r['steps_ddp']} vs {r['steps_single']} steps, max relative loss difference "
                   f"{r['max_relative_loss_difference']:.2g} (allowed {rtol})")


@check("ddp_resume_exact")
def ddp_resume_exact(*, world_size: int = 2, max_steps: int = 4) -> Verdict:
    """Under torchrun, N steps straight equal N/2 steps + --resume: identical adapter bytes and loss curve."""
    from trainer.distributed import ddp_resume

    data = fixtures.dataset_dir()
    r = ddp_resume(str(data / "train.jsonl"), str(data / "validation.jsonl"), tempfile.mkdtemp(prefix="rtf-ddp-"),
                   world_size=world_size, max_steps=max_steps)
    same = r["adapter_sha256_straight"] == r["adapter_sha256_resumed"]
    return Verdict(r["passed"], r, f"adapters {'identical' if same else 'DIFFER'}; loss curves "
                   f"{'equal' if r['loss_straight'] == r['loss_resumed'] else 'DIFFER'}")

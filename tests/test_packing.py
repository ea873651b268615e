"""Sequence packing: the bin packing, the packed rows, and the two falsifiers with planted defects."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falsify.checks.scaling import cross_boundary_attention, packed_vs_unpacked_loss
from trainer.data import IGNORE, Example, build_examples, collate
from trainer.errors import TrainerError
from trainer.packing import best_fit_decreasing, concat_row, pack_examples


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=60), st.integers(64, 128))
def test_best_fit_decreasing_is_a_valid_tight_packing(lengths, capacity):
    bins = best_fit_decreasing(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))  # every example exactly once
    loads = [sum(lengths[i] for i in b) for b in bins]
    assert all(load <= capacity for load in loads)
    # Any-fit property: no two rows could have been one (else the later row's first item would have fit).
    assert all(loads[a] + loads[b] > capacity for a in range(len(bins)) for b in range(a + 1, len(bins)))
    assert best_fit_decreasing(lengths, capacity) == bins  # deterministic


def test_packed_row_restarts_positions_and_keeps_the_label_count():
    a = Example([1, 2, 3, 4], [IGNORE, IGNORE, 3, 4])
    b = Example([5, 6, 7], [5, 6, 7])  # pretraining-style: the first token is a label
    row = concat_row([a, b])
    assert row.input_ids == [1, 2, 3, 4, 5, 6, 7]
    assert row.position_ids == [0, 1, 2, 3, 0, 1, 2]
    assert row.labels == [IGNORE, IGNORE, 3, 4, IGNORE, 6, 7]  # token 5 would be predicted from sample a
    batch = collate([row, Example([9, 9], [IGNORE, 9], [0, 1])], pad_id=0)
    assert batch["position_ids"][1].tolist() == [0, 1, 0, 1, 2, 3, 4]  # the padding tail is its own segment
    assert batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    unpacked = sum(sum(1 for x in ex.labels[1:] if x != IGNORE) for ex in (a, b))
    assert int((collate([row], 0)["labels"][:, 1:] != IGNORE).sum()) == unpacked


def test_pack_examples_refuses_an_example_longer_than_a_row():
    with pytest.raises(TrainerError, match=r"data\.max_seq_len=4"):
        pack_examples([Example([1] * 5, [1] * 5)], 4)


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_per_sample_loss(attn):
    result = packed_vs_unpacked_loss(attn_implementation=attn)
    assert result["passed"], result
    assert result["rows"] < result["examples"]  # it really packed


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_no_attention_across_sample_boundaries(attn):
    result = cross_boundary_attention(attn_implementation=attn)
    assert result["passed"], result


@pytest.mark.slow
@pytest.mark.parametrize("defect", ["no_attention_reset", "no_position_reset", "with_cache"])
def test_falsifiers_catch_planted_packing_defects(defect):
    assert not packed_vs_unpacked_loss(defect=defect)["passed"]
    leak = cross_boundary_attention(defect=defect)
    assert not leak["passed"] and leak["max_abs_change_of_b_logits"] > 1e-3


@pytest.mark.slow
def test_packing_through_the_peft_model_and_the_trainer(tiny_data, tmp_path):
    """The trainer's own path: a LoRA-wrapped model, and a short packed training run."""
    import torch

    from conftest import fast_config
    from falsify.checks.scaling import _packing_model
    from trainer.models import apply_lora
    from trainer.train import train

    cfg = fast_config(tiny_data, lora={"dropout": 0.0})
    peft_model = apply_lora(_packing_model("sdpa", seed=0), cfg.lora).eval()
    with torch.no_grad():  # B = 0 at init: perturb it so the adapters take part
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    assert cross_boundary_attention(model=peft_model)["passed"]
    assert packed_vs_unpacked_loss(model=peft_model)["passed"]

    cfg = fast_config(tiny_data)
    cfg.data.packing, cfg.data.max_seq_len = True, 256  # fast_config's first parameter is called `data`
    metrics = train(cfg, tmp_path / "packed")
    assert metrics["status"] == "finished" and metrics["steps"] == 4
    assert metrics["final_train_loss"] is not None and metrics["final_train_loss"] < metrics["initial_val_loss"] * 1.5


def test_packing_with_an_overlong_example_names_the_option_and_length(tiny_data):
    """Packing never truncates: a too-long record is a user error naming data.packing, data.max_seq_len and its length."""
    from trainer.data import load_jsonl
    from trainer.tokenizer import train_tokenizer

    records = load_jsonl(tiny_data["train"])
    tokenizer = train_tokenizer(records, 512)
    too_long = r"data\.packing=true: record 1 \(id synthetic-0\) is \d+ tokens, longer than data\.max_seq_len=80"
    with pytest.raises(TrainerError, match=too_long):
        build_examples(tokenizer, records, 80, packing=True)
    examples, _ = build_examples(tokenizer, records, 80)  # without packing: truncated, as before
    assert max(len(ex.input_ids) for ex in examples) == 80

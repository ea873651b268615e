"""DDP under torchrun: sharding of the global batch, bad world sizes, and (slow) the real multi-process runs."""

from __future__ import annotations

import pytest

from trainer.data import IGNORE, BatchStream, Example, count_label_tokens, count_tokens
from trainer.errors import TrainerError


def _examples(n: int) -> list[Example]:
    return [Example([i + 1] * (3 + i % 4), [IGNORE] + [i + 1] * (2 + i % 4)) for i in range(n)]


@pytest.mark.parametrize("n", [12, 9])  # 9: the epoch's last global batch is short
def test_ranks_share_exactly_the_global_batch(n):
    examples, world, batch = _examples(n), 2, 4
    single = BatchStream(examples, batch, seed=3, pad_id=0)
    ranks = [BatchStream(examples, batch, seed=3, pad_id=0, rank=r, world_size=world) for r in range(world)]
    for _ in range(2 * single.batches_per_epoch):
        whole = single.next_batch()
        parts = [s.next_batch() for s in ranks]
        seen = sorted(row[0] for p in parts if "stand_in" not in p for row in p["input_ids"].tolist())
        assert seen == sorted(row[0] for row in whole["input_ids"].tolist())
        assert sum(count_label_tokens(p) for p in parts) == count_label_tokens(whole)
        assert sum(count_tokens(p) for p in parts) == count_tokens(whole)
        assert all(s.position() == single.position() for s in ranks)  # one data position for checkpoints


def test_stand_in_batch_adds_nothing():
    ranks = [BatchStream(_examples(5), 4, seed=0, pad_id=0, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.next_batch()
    last = [s.next_batch() for s in ranks]  # 1 example left: rank 0 takes it, rank 1 stands in
    assert "stand_in" not in last[0] and "stand_in" in last[1]
    assert count_label_tokens(last[1]) == 0 and count_tokens(last[1]) == 0
    assert bool((last[1]["labels"] == IGNORE).all())


def test_world_size_that_does_not_divide_the_batch_is_an_error(tiny_data, tmp_path, monkeypatch):
    from conftest import fast_config
    from trainer.train import train

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    cfg = fast_config(tiny_data, training={"batch_size": 3})
    with pytest.raises(TrainerError, match=r"training\.batch_size=3 is not divisible by the torchrun world size 2"):
        train(cfg, tmp_path / "exp")
    assert not (tmp_path / "exp").exists()  # refused before anything was written


def test_cli_reports_the_bad_world_size_in_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    from conftest import fast_config
    from trainer.__main__ import main
    from trainer.config import save_config

    save_config(fast_config(tiny_data, training={"batch_size": 5}), tmp_path / "c.yaml")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.batch_size=5" in err[0] and "world size 2" in err[0]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_whole_batch(tiny_data, tmp_path):
    """torchrun 2 x batch 2 vs 1 x batch 4: same steps, same loss curve; and the planted defect is caught."""
    from falsify.checks.scaling import ddp_equivalence

    args = (str(tiny_data["train"]), str(tiny_data["validation"]))
    result = ddp_equivalence(*args, str(tmp_path / "eq"))
    assert result["passed"], result
    planted = ddp_equivalence(*args, str(tmp_path / "defect"), defect="half_batch")
    assert not planted["passed"] and planted["max_relative_loss_difference"] > 1e-3, planted


@pytest.mark.slow
def test_resume_under_ddp_is_exact(tiny_data, tmp_path):
    from falsify.checks.scaling import ddp_resume
    from trainer.experiment import ExperimentPaths

    result = ddp_resume(str(tiny_data["train"]), str(tiny_data["validation"]), str(tmp_path / "resume"))
    assert result["passed"], result
    log = ExperimentPaths(tmp_path / "resume" / "straight").log.read_text()
    assert log.count("step 1/4 loss") == 1  # only rank 0 writes the log (and the store, checkpoints)

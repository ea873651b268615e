"""The A-vs-B summary every training benchmark prints: ratio of medians, bootstrap CI over pairs, spread."""

from __future__ import annotations

import pytest

from falsify.bench.pairs import ratio_summary


def test_ratio_of_medians_with_a_ci_that_holds_it():
    a, b = [12.0, 10.0, 11.0, 30.0, 9.0], [5.0, 5.0, 5.5, 4.5, 5.0]
    s = ratio_summary(a, b)
    assert s["ratio"] == pytest.approx(11.0 / 5.0) and s["pairs"] == 5
    assert s["ci95"][0] <= s["ratio"] <= s["ci95"][1] and s["ci95"][0] < s["ci95"][1]
    assert s["pair_ratios"][3] == pytest.approx(30 / 4.5) and s["pair_ratio_range"] == [pytest.approx(9 / 5), pytest.approx(30 / 4.5)]


def test_equal_sides_give_a_ci_of_exactly_one():
    s = ratio_summary([3.0, 4.0, 5.0], [3.0, 4.0, 5.0])
    assert s["ratio"] == 1.0 and s["ci95"] == [1.0, 1.0]


def test_unpaired_input_is_refused():
    with pytest.raises(ValueError):
        ratio_summary([1.0, 2.0], [1.0])


def test_pairs_alternate_a_b_then_b_a_and_record_the_load(tmp_path, capsys):
    from falsify.bench.pairs import alternate, write_results

    calls = []
    runs, load = alternate(("a", "b"), 3, lambda v, pair: calls.append((v, pair)) or {"v": v, "pair": pair}, lambda r: r["v"])
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert [r["pair"] for r in runs["a"]] == [0, 1, 2] and len(load) == 7 and all(x >= 0 for x in load)
    assert "pair 2/3 b: b" in capsys.readouterr().out
    write_results(tmp_path / "out", "thing", {"x": 1}, "# md\n")
    assert (tmp_path / "out" / "thing.json").read_text() == '{\n "x": 1\n}' and (tmp_path / "out" / "thing.md").read_text() == "# md\n"


def test_the_generation_bench_runs_end_to_end_on_a_tiny_model(tmp_path):
    """Both sides generate for the same prompts and the report says how many outputs are identical."""
    import json
    import shutil

    from falsify.bench import generation
    from falsify.checks import fixtures

    model = fixtures.model_dir("tiny", 0)
    try:
        holdout = tmp_path / "holdout.jsonl"
        holdout.write_text("".join(json.dumps({"input": f"fn f{i}(x: u32) -> u32 {{ x + {i} }}", "output": "",
                                               "metadata": {"id": f"f{i}"}}) + "\n" for i in range(3)))
        assert generation.main(["--model", str(model), "--holdout", str(holdout), "--functions", "3", "--batch-size", "2",
                                "--max-new-tokens", "4", "--pairs", "1", "--out", str(tmp_path / "out")]) == 0
    finally:
        shutil.rmtree(model, ignore_errors=True)
    result = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert result["functions"] == 3 and set(result["runs"]) == {"ours", "generate-batch-1"}
    assert 0 <= result["identical_outputs"] <= 3 and result["speed"]["ratio"] > 0 and len(result["load"]) == 3


def test_max_relative_difference_of_two_curves():
    from falsify.bench.pairs import max_relative_difference

    assert max_relative_difference([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    assert max_relative_difference([1.0], [1.0, 2.0]) == float("inf") and max_relative_difference([], []) == float("inf")



@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_flop_counts_see_each_weight_once_whatever_wraps_it(mode, tmp_path):
    """LoRA and QLoRA of one base hold the same matmuls: peft's wrapper of a 4-bit layer is not one more."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from falsify.bench.trl_worker import flop_counts
    from trainer.config import LoraConfig
    from trainer.models import apply_lora, quantization_config

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=False)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    kwargs = {"quantization_config": quantization_config(torch.device("cpu"))} if mode == "qlora" else {}
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tmp_path, **kwargs), LoraConfig(rank=4, alpha=8.0, dropout=0.0))
    attention = 2 * 32 * 32 + 2 * 32 * 16  # q, o; k, v with 2 KV heads of 8
    mlp = 3 * 32 * 64  # gate, up, down
    assert flop_counts(model, 8.0)["n_frozen_matmul"] == 2 * (attention + mlp) + 32 * 64  # + the LM head


def test_merged_results_keep_the_rows_not_measured_again_in_row_order(tmp_path):
    import json

    from falsify.bench.trl import merged

    def row(name, ratio):
        return {"row": {"name": name}, "ratio": ratio}

    old = {"rows": [row("tiny-lora", 2.0), row("smollm2-qlora", 1.29)], "command": "python -m falsify.bench trl",
           "profiles": [{"row": "tiny-lora"}, {"row": "smollm2-qlora"}]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    new = {"rows": [row("smollm2-qlora-bf16", 1.5), row("tiny-lora", 2.1)], "command": "python -m falsify.bench trl --merge",
           "profiles": [{"row": "tiny-lora"}]}
    out = merged(tmp_path / "results.json", new)
    assert [(r["row"]["name"], r["ratio"]) for r in out["rows"]] == [("tiny-lora", 2.1), ("smollm2-qlora", 1.29),
                                                                       ("smollm2-qlora-bf16", 1.5)]
    assert [p["row"] for p in out["profiles"]] == ["tiny-lora", "smollm2-qlora"]
    assert out["commands"] == ["python -m falsify.bench trl", "python -m falsify.bench trl --merge"]
    assert merged(tmp_path / "absent.json", new) is new

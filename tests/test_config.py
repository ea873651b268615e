"""Packaged configs load and validate; overrides apply; the shared typed-YAML rejects typos."""

from __future__ import annotations

import pytest

from trainer.config import PACKAGED_CONFIGS, load_config
from trainer.errors import TrainerError


@pytest.mark.parametrize("name", ["tiny-lora", "tiny-qlora", "qwen2.5-0.5b-qlora", "llama-124m-pretrain"])
def test_packaged_configs_load(name):
    cfg = load_config(name)
    assert cfg.name == name and (PACKAGED_CONFIGS / f"{name}.yaml").is_file()


def test_override_applies_and_is_typed():
    cfg = load_config("tiny-qlora", ["training.max_steps=7", "lora.dropout=0.1", "training.gradient_clipping=null"])
    assert cfg.training.max_steps == 7 and cfg.lora.dropout == 0.1 and cfg.training.gradient_clipping is None


def test_unknown_packaged_name_lists_the_known_ones():
    with pytest.raises(TrainerError, match="no config file 'tiny-qlra'.*tiny-qlora"):
        load_config("tiny-qlra")


@pytest.mark.parametrize("override, message", [
    ("training.lr=1", "unknown"), ("training.batch_size=0", "batch_size"), ("lora.dropout=1.5", "lora.dropout"),
    ("training.mode=sft", "training.mode"), ("data.max_seq_len=x", "expects int"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(TrainerError, match=message):
        load_config("tiny-lora", [override])


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    """YAML keeps the last of two equal keys; a config must not silently lose the first."""
    path = tmp_path / "twice.yaml"
    path.write_text("name: x\ntraining:\n  max_steps: 5\n  learning_rate: 1.0e-3\n  max_steps: 50\n")
    with pytest.raises(TrainerError, match=r"twice\.yaml:5: key 'training\.max_steps' appears twice \(first on line 3\)"):
        load_config(str(path))


def test_yaml_values_keep_their_types_and_lines():
    from trainer.typed_yaml import compose_with_lines

    data, lines = compose_with_lines("a: 1\nb: [x, 2.5, null, true]\nc:\n  d: '7'\n", "t.yaml")
    assert data == {"a": 1, "b": ["x", 2.5, None, True], "c": {"d": "7"}}
    assert lines == {"a": 1, "b": 2, "b.0": 2, "b.1": 2, "b.2": 2, "b.3": 2, "c": 3, "c.d": 4}


@pytest.mark.parametrize("written, value", [("2e-4", 2e-4), ("1e4", 1e4), ("0.0002", 2e-4), ("10000", 10000.0), ("1.0e-4", 1e-4)])
def test_numbers_as_people_write_them_in_set_and_in_yaml(written, value, tmp_path):
    """PyYAML 1.1 reads `2e-4` and `1e4` as strings; a float key and a count key take every spelling, from --set and files."""
    from_set = load_config("tiny-lora", [f"training.learning_rate={written}"])
    path = tmp_path / "numbers.yaml"
    path.write_text(f"name: n\ntraining:\n  learning_rate: {written}\n  weight_decay: {written}\n")
    from_file = load_config(str(path))
    assert from_set.training.learning_rate == from_file.training.learning_rate == from_file.training.weight_decay == value
    assert isinstance(from_file.training.learning_rate, float)


@pytest.mark.parametrize("written", ["1e4", "10000", "1.0e+4"])
def test_counts_take_an_exponent_when_it_is_whole(written, tmp_path):
    path = tmp_path / "steps.yaml"
    path.write_text(f"name: n\ntraining:\n  max_steps: {written}\n")
    for cfg in (load_config("tiny-lora", [f"training.max_steps={written}"]), load_config(str(path))):
        assert cfg.training.max_steps == 10000 and isinstance(cfg.training.max_steps, int)


def test_a_number_still_wrong_keeps_the_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: n\ntraining:\n  seed: 1\n  max_steps: 2e-4\n")
    with pytest.raises(TrainerError, match=r"bad\.yaml:4: key 'training\.max_steps' expects int or null, got 0\.0002 \(float\)"):
        load_config(str(path))
    with pytest.raises(TrainerError, match=r"--set training\.learning_rate: key 'training\.learning_rate' expects float, got '2e-4x'"):
        load_config("tiny-lora", ["training.learning_rate=2e-4x"])
    with pytest.raises(TrainerError, match=r"training\.learning_rate' expects float, got '2e-4' \(str\)"):  # quoted: a string, said so
        load_config("tiny-lora", ["training.learning_rate='2e-4'"])


@pytest.mark.parametrize("override, message", [
    ("training.precision=fp16", "training.precision"), ("training.divergence_factor=1.0", "divergence_factor"),
    ("training.divergence_window=0", "divergence_window"),
])
def test_guard_and_precision_keys_are_validated(override, message):
    with pytest.raises(TrainerError, match=message):
        load_config("tiny-lora", [override])

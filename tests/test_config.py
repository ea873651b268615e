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

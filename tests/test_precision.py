"""training.precision `bf16-where-native`: bf16 compute where the hardware has it, fp32 elsewhere, said aloud."""

from __future__ import annotations

import pytest
import torch

from trainer import runtime


@pytest.fixture(autouse=True)
def _default_precision():
    yield
    runtime.set_precision("auto")


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    with_flag, without = tmp_path / "with", tmp_path / "without"
    with_flag.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert runtime.cpu_has_native_bf16(str(with_flag)) and not runtime.cpu_has_native_bf16(str(without))
    assert not runtime.cpu_has_native_bf16(str(tmp_path / "missing"))


@pytest.mark.parametrize("precision, native, expected", [
    ("auto", True, "fp32"), ("fp32", True, "fp32"), ("bf16", False, "bf16"),
    ("bf16-where-native", True, "bf16"), ("bf16-where-native", False, "fp32"),
])
def test_compute_dtype_on_cpu(monkeypatch, precision, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    runtime.set_precision(precision)
    assert runtime.compute_dtype(torch.device("cpu")) == expected
    a = torch.randn(4, 4)
    with runtime.autocast(torch.device("cpu")):
        assert (a @ a).dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)  # what the forward really computes in


def test_on_cuda_bf16_where_native_is_bf16():
    runtime.set_precision("bf16-where-native")
    assert runtime.compute_dtype(torch.device("cuda")) == "bf16"


def test_the_config_accepts_it_and_rejects_a_typo():
    from trainer.config import load_config
    from trainer.errors import TrainerError

    assert load_config(data={"name": "x", "training": {"precision": "bf16-where-native"}}).training.precision == "bf16-where-native"
    with pytest.raises(TrainerError, match="training.precision"):
        load_config(data={"name": "x", "training": {"precision": "bf16-native"}})

"""One definition of VRAM: trainer.runtime.peak_vram_mb (allocator-reserved peak), which the trainer writes to metrics.json,
FALSIFY-GPU-003 measures and the rubric's e1_peak_vram reads; NVML's device-wide samples are only a labelled fallback."""

from __future__ import annotations

import torch

from falsify.report.rubric import vram_reading
from trainer.runtime import peak_vram_mb


def test_there_is_no_vram_reading_off_cuda():
    assert peak_vram_mb(torch.device("cpu")) is None


def test_the_rubric_reads_the_trainers_measure_before_nvml():
    experiment = {"metrics": {"peak_vram_mb": 3000.0}, "peak_vram_mb": 9000.0}  # 9000: the NVML table, context included
    peak, source = vram_reading(experiment)
    assert peak == 3000.0 and "max_memory_reserved" in source


def test_a_run_without_the_measure_says_it_fell_back_to_nvml():
    peak, source = vram_reading({"metrics": {}, "peak_vram_mb": 9000.0})
    assert peak == 9000.0 and "NVML" in source and "predates" in source

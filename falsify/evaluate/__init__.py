"""The Rust evaluator: sandboxed compile, test, mutation score, coverage, BLEU and CodeBLEU.

`evaluate_samples(samples, out_dir)` is the Python API; `python -m falsify.evaluate` the CLI.
"""

from .run import evaluate_samples
from .toolchain import ToolchainMissing

__all__ = ["evaluate_samples", "ToolchainMissing"]

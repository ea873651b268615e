"""The check library. Importing it registers every check in CHECKS (name -> Check)."""

from falsify.checks import (  # noqa: F401  (registration)
    classifier,
    evaluator,
    gpu,
    hparams,
    loading,
    lora,
    loss,
    pretrained,
    runs,
    scaling,
    shapes,
)
from falsify.checks.registry import CHECKS, Check, Verdict, check

__all__ = ["CHECKS", "Check", "Verdict", "check"]

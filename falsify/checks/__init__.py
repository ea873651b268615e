"""The check library. Importing it registers every check in CHECKS (name -> Check)."""

from falsify.checks import evaluator, gpu, hparams, loading, lora, loss, pretrained, runs, scaling, shapes  # noqa: F401  (registration)
from falsify.checks.registry import CHECKS, Check, Verdict, check

__all__ = ["CHECKS", "Check", "Verdict", "check"]

"""The check library. Importing it registers every check in CHECKS (name -> Check)."""

from falsify.checks.registry import CHECKS, Check, Verdict, check
from falsify.checks import evaluator, gpu, hparams, loading, lora, loss, runs, scaling, shapes  # noqa: F401,E402  (registration)

__all__ = ["CHECKS", "Check", "Verdict", "check"]

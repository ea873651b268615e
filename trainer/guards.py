"""The run's guards beyond the Andon cord's non-finite checks: divergence of the training loss.

Non-finite loss, gradient norm and validation loss raise `AndonStop` where they are computed
(trainer.train); a loss that stays finite but climbs is found here, recorded, and ends the run
only when `training.stop_on_divergence` says so.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from trainer.errors import AndonStop, TrainerError


class DivergenceStop(AndonStop):
    """The divergence guard, configured to end the run (`training.stop_on_divergence`); exit 3 like the Andon guard."""

    def __init__(self, step: int, finding: dict):
        TrainerError.__init__(self, f"training stopped by guard at step {step}: diverging loss (mean of the last "
                              f"{finding['window']} steps {finding['window_mean']:.4g} > {finding['factor']:g} x its lowest "
                              f"{finding['lowest_window_mean']:.4g}); the last good checkpoint was kept")
        self.step, self.what, self.value, self.finding = step, "diverging loss", finding["window_mean"], finding


@dataclass
class DivergenceWatch:
    """Divergence: the mean training loss of the last `window` steps above `factor` x the lowest such mean earlier in the run.

    A window mean, not one step, so a single noisy batch does not count; the first finding is kept (metrics.json).
    """

    factor: float | None
    window: int
    recent: collections.deque = field(default_factory=collections.deque)
    lowest: float = math.inf
    found: dict | None = None

    def observe(self, step: int, loss: float) -> dict | None:
        """Take one step's loss; the finding, the first time the loss is found diverging."""
        self.recent.append(loss)
        if len(self.recent) > self.window:
            self.recent.popleft()
        if self.factor is None or len(self.recent) < self.window:
            return None
        mean = sum(self.recent) / self.window
        if self.found is None and mean > self.factor * self.lowest:
            self.found = {"step": step, "window": self.window, "window_mean": mean, "lowest_window_mean": self.lowest,
                          "factor": self.factor}
            return self.found
        self.lowest = min(self.lowest, mean)
        return None

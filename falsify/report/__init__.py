"""The report: evidence from a run, the 100-point rubric, and the scorecard files."""

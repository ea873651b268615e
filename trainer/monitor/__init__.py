"""The training monitor: the metric store the loop writes, and the live dashboard that reads it."""

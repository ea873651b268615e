"""adapter-rejected.json: the report's gates turned this experiment's adapter down.

The report (falsify.report) writes it when a P-GATE fails and removes it when every gate
that ran passes; `trainer generate` refuses a rejected adapter unless told
`--allow-rejected`. The file names the adapter by its weights' sha256, so a rejection
never sticks to a different adapter trained later in the same directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainer.errors import TrainerError
from trainer.experiment import ExperimentPaths
from trainer.files import write_json_atomic


def write_rejection(paths: ExperimentPaths, *, adapter: Path, adapter_sha256: str | None, reasons: list[str],
                    scorecard: str) -> Path:
    return write_json_atomic(paths.rejection, {"adapter": str(adapter), "adapter_sha256": adapter_sha256,
                                               "reasons": reasons, "scorecard": scorecard})


def clear_rejection(paths: ExperimentPaths) -> bool:
    """Remove the rejection (the adapter passed every gate that ran); True if there was one."""
    try:
        paths.rejection.unlink()
        return True
    except FileNotFoundError:
        return False


def read_rejection(paths: ExperimentPaths) -> dict | None:
    if not paths.rejection.is_file():
        return None
    try:
        data = json.loads(paths.rejection.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainerError(f"{paths.rejection}: unreadable rejection record ({exc}); delete it or rerun the report") from None
    if not isinstance(data, dict) or not isinstance(data.get("reasons"), list):
        raise TrainerError(f"{paths.rejection}: field 'reasons' must be a list; delete the file or rerun the report")
    return data


def refuse_if_rejected(paths: ExperimentPaths, adapter_sha256: str | None, allow: bool) -> str | None:
    """Raise for a rejected adapter unless `allow`; returns the warning to log when it is allowed."""
    data = read_rejection(paths)
    if data is None or data.get("adapter_sha256") != adapter_sha256:
        return None
    reasons = "; ".join(str(r) for r in data["reasons"])
    if not allow:
        raise TrainerError(f"{paths.root}: the adapter was rejected by the report's gates ({reasons}); "
                           f"see {paths.rejection}, or pass --allow-rejected to generate anyway")
    return f"generating from a rejected adapter (--allow-rejected): {reasons}"

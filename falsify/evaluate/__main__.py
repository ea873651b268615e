"""CLI: python -m falsify.evaluate --samples FILE.jsonl --out DIR [--jobs N] [--no-mutation] [--no-coverage] [--reruns N]
[--disk-limit-mb N]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .run import evaluate_samples
from .summary import SUMMARY_FILE
from .toolchain import ToolchainMissing
from .verdict import SAMPLES_FILE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m falsify.evaluate", description=__doc__)
    ap.add_argument("--samples", required=True, type=Path, help="JSONL: id, function_code, generated_tests[, reference_tests, metadata]")
    ap.add_argument("--out", required=True, type=Path, help=f"directory for {SAMPLES_FILE} and {SUMMARY_FILE}")
    ap.add_argument("--jobs", type=int, default=None, help="samples evaluated in parallel (default: CPU count)")
    ap.add_argument("--no-mutation", action="store_true", help="skip mutation testing")
    ap.add_argument("--no-coverage", action="store_true", help="skip coverage (builds without instrumentation)")
    ap.add_argument("--timeout", type=float, default=30.0, help="wall-time limit of one test run, seconds (default 30)")
    ap.add_argument("--build-timeout", type=float, default=120.0, help="wall-time limit of one build, seconds (default 120)")
    ap.add_argument("--reruns", type=int, default=3,
                    help="test runs of a passing sample in all; failing any makes it flaky (default 3, 1 = no rerun)")
    ap.add_argument("--disk-limit-mb", type=int, default=256,
                    help="MiB one test run may write in its sample's dirs; more ends it as disk_limit (default 256)")
    args = ap.parse_args(argv)
    if not args.samples.is_file():
        print(f"error: samples file not found: {args.samples}", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    if args.disk_limit_mb < 1:
        print(f"error: --disk-limit-mb must be at least 1, got {args.disk_limit_mb}", file=sys.stderr)
        return 2
    if args.reruns < 1:
        print(f"error: --reruns must be at least 1, got {args.reruns}", file=sys.stderr)
        return 2
    try:
        summary = evaluate_samples(args.samples, args.out, jobs=args.jobs, mutation=not args.no_mutation,
                                   coverage=not args.no_coverage, timeout=args.timeout, build_timeout=args.build_timeout,
                                   reruns=args.reruns, disk_limit_mb=args.disk_limit_mb)
    except ToolchainMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = ("n", "failures", "compile_rate", "pass_rate", "mutation_score", "line_coverage_delta", "line_coverage_gain",
            "wall_seconds")
    print(json.dumps({k: summary[k] for k in keys}))
    print(f"wrote {args.out / SAMPLES_FILE} and {args.out / SUMMARY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

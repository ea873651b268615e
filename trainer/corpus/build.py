"""Build the function -> tests corpus from real Rust crate sources.

`python -m trainer corpus build --source DIR --out DIR [--crates FILE|all] [--seed N]`

Walks crates laid out as Debian ships them (`<source>/<crate>-<version>/`, newest version
of each crate wins: `crates`), parses every `.rs` file with tree-sitter-rust (`scan`),
and pairs each non-test function with the `#[test]` functions and `proptest!` blocks that
call it by name (`pairing`, `standalone`). Where a test may live, what "calls it" means and
when a pair counts as `self_contained` are heuristics, documented at the functions that
implement them.

Writes `train/validation/test.jsonl` (split by a hash of the record id), `holdout.jsonl`
(four edge-case categories from whole crates held out of the splits: `splits`) and
`corpus_report.json`. Every record says where its function is in its crate (`in_crate`).
Same sources and seed give byte-identical files: sorted traversal, sorted keys, no clocks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from trainer.corpus.crates import DEFAULT_CRATE_LIST, Crate, read_crate_list, select_crates
from trainer.corpus.pairing import MAX_FUNCTION_CHARS, pair_crate
from trainer.corpus.scan import MAX_TESTS_CHARS
from trainer.corpus.splits import (
    HOLDOUT_CATEGORIES,
    HOLDOUT_MAX_SHARE,
    HOLDOUT_PER_CATEGORY,
    SPLITS,
    holdout_targets,
    select_holdout,
    split_of,
)
from trainer.errors import TrainerError
from trainer.files import write_atomic, write_json_atomic, write_jsonl_atomic


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / ".write-check", "")
        (out / ".write-check").unlink()
    except OSError as exc:
        raise TrainerError(f"cannot write corpus output directory {out}: {exc.strerror}") from None


def _new_report(source: Path, seed: int, missing: list[str]) -> dict:
    return {
        "source": str(source), "seed": seed, "missing_crates": missing,
        "crates": {}, "skipped_files": [], "functions_scanned": 0,
        "skipped_functions": Counter({"tests_too_large": 0, "function_too_large": 0, "duplicate_input": 0,
                                      "tests_not_buildable_here": 0}),
        "skipped_tests": Counter({"needs_unpackaged_crate": 0, "needs_local_module": 0}),
        "bounds": {"max_function_chars": MAX_FUNCTION_CHARS, "max_tests_chars": MAX_TESTS_CHARS,
                   "holdout_per_category": HOLDOUT_PER_CATEGORY, "holdout_max_share": HOLDOUT_MAX_SHARE, "split_percent": dict(SPLITS)},
    }


def _pair_all(selected: list[Crate], report: dict) -> list[dict]:
    """The records of every crate, a function whose source was seen before dropped."""
    records, seen_inputs = [], set()
    for crate in selected:
        kept, dropped_before = 0, sum(report["skipped_tests"].values())
        for rec in pair_crate(crate, report):
            if rec["input"] in seen_inputs:  # vendored copies: one example, one split
                report["skipped_functions"]["duplicate_input"] += 1
                continue
            seen_inputs.add(rec["input"])
            records.append(rec)
            kept += 1
        report["crates"][crate.name] = {"version": crate.version, "pairs": kept,
                                        "tests_not_buildable_here": sum(report["skipped_tests"].values()) - dropped_before}
    return records


def _assign(records: list[dict], held_crates: list[str], holdout: dict[str, list[dict]],
            seed: int) -> tuple[dict[str, list[dict]], list[dict]]:
    """(the split records by split name, the holdout records); no record of a held-out crate
    is in a split. Holdout order interleaves the categories (the first of each, then the
    second of each, ...), so its first N records are as balanced as N allows."""
    held = set(held_crates)
    splits: dict[str, list[dict]] = {name: [] for name, _ in SPLITS}
    for rec in records:
        if rec["metadata"]["crate"] not in held:
            splits[split_of(rec["metadata"]["id"], seed)].append(rec)
    holdout_records = []
    for rank in range(max(map(len, holdout.values()), default=0)):
        for category, recs in holdout.items():
            if rank < len(recs):
                holdout_records.append({**recs[rank], "metadata": {**recs[rank]["metadata"], "holdout_category": category}})
    return splits, holdout_records


def _count(report: dict, records: list[dict], splits: dict[str, list[dict]], holdout_records: list[dict]) -> None:
    """The totals of corpus_report.json."""
    report["skipped_functions"] = dict(sorted(report["skipped_functions"].items()))
    report["skipped_tests"] = dict(sorted(report["skipped_tests"].items()))
    report["skipped_file_reasons"] = dict(sorted(Counter(s["reason"] for s in report["skipped_files"]).items()))
    report["pairs"] = len(records)
    report["splits"] = {name: len(recs) for name, recs in splits.items()}
    report["holdout"] = {c: sum(r["metadata"]["holdout_category"] == c for r in holdout_records) for c in HOLDOUT_CATEGORIES}
    report["holdout_total"] = len(holdout_records)
    held = set(report["holdout_crates"])
    report["held_out_not_in_holdout"] = sum(r["metadata"]["crate"] in held for r in records) - len(holdout_records)
    report["category_pairs"] = {c: sum(c in r["metadata"]["categories"] for r in records) for c in HOLDOUT_CATEGORIES}
    report["self_contained"] = sum(r["metadata"]["self_contained"] for r in records)
    report["self_contained_by_split"] = {name: sum(r["metadata"]["self_contained"] for r in recs)
                                         for name, recs in [*splits.items(), ("holdout", holdout_records)]}
    report["with_proptest"] = sum(r["metadata"]["has_proptest"] for r in records)


def build_corpus(source: Path, out: Path, *, crates: list[str] | str | None = None, seed: int = 0) -> dict:
    """Build the corpus from `source` into `out`; returns the report (also corpus_report.json).

    `crates`: None for trainer/corpus/crates.txt, a list of names, or "all".
    """
    source, out = Path(source), Path(out)
    selected, missing = select_crates(source, crates)
    _check_writable(out)
    report = _new_report(source, seed, missing)
    records = _pair_all(selected, report)
    held_crates, holdout = select_holdout(records, seed)
    splits, holdout_records = _assign(records, held_crates, holdout, seed)
    for name, recs in [*splits.items(), ("holdout", holdout_records)]:
        # sorted keys, so the files do not depend on the order the record's fields were filled in
        write_jsonl_atomic(out / f"{name}.jsonl", recs, sort_keys=True)
    report["holdout_crates"] = sorted(held_crates)
    for name, entry in report["crates"].items():
        entry["held_out"] = name in report["holdout_crates"]
    report["holdout_targets"] = holdout_targets(records)
    _count(report, records, splits, holdout_records)
    write_json_atomic(out / "corpus_report.json", report)
    return report


def _summary(report: dict, out: Path, seconds: float) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    holdout = ", ".join(f"{k} {v}" for k, v in report["holdout"].items())
    skipped = sum(report["skipped_file_reasons"].values())
    lines = [
        f"corpus: {report['pairs']} pairs from {len(report['crates'])} crates in {seconds:.1f}s -> {out}",
        f"  splits: {splits}",
        f"  holdout: {holdout} (from {len(report['holdout_crates'])} held-out crates: {', '.join(report['holdout_crates'])})",
        f"  self-contained: {report['self_contained']}; with proptest: {report['with_proptest']}",
        f"  skipped files: {skipped} {report['skipped_file_reasons'] or ''}".rstrip(),
        f"  skipped functions: {report['skipped_functions']}",
        f"  skipped tests (cannot build in their crate here): {report['skipped_tests']}",
    ]
    if report["missing_crates"]:
        lines.append(f"  warning: crates not found under the source: {', '.join(report['missing_crates'])}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`corpus build ...` (argv after `corpus`)."""
    parser = argparse.ArgumentParser(prog="python -m trainer corpus")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("build", help="build train/validation/test/holdout JSONL from crate sources")
    p.add_argument("--source", required=True, type=Path, help="directory of <crate>-<version>/ dirs")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--crates", default=None, help="crate list file (one name a line) or 'all' "
                                                  f"(default {DEFAULT_CRATE_LIST.name})")
    p.add_argument("--seed", type=int, default=0, help="split and holdout seed")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        crates = args.crates if args.crates in (None, "all") else read_crate_list(Path(args.crates))
        start = time.perf_counter()
        report = build_corpus(args.source, args.out, crates=crates, seed=args.seed)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(_summary(report, args.out, time.perf_counter() - start))
    return 0

"""`python -m falsify.report.critic_pool --scored FILE --out FILE`: would the critic pick better tests from a pool
of candidates whose quality the evaluator already knows?

Reranking real generations measures the critic only where the generator gives it a choice: when
no candidate builds, first and reranked are equally bad whatever the critic says. This asks the
critic's half of the question on its own. The input is `trainer critic score` output over
critic-data rows (`label` verified by the evaluator, `id` = `<function>~<intent>`, `critic`).
For each function with at least two candidates:

- `random candidate`: one candidate drawn at random, seeded by the function's id (the rows'
  own order is by intent, the crate's tests first, so "the first row" would flatter the baseline);
- `critic-reranked`: the candidate with the highest P(good), the first of equals.

Rates per function: compile_rate (not `does_not_compile`), pass_rate (built and passed: `good`,
`trivial`, `unrelated`) and good_rate (`good`: builds, passes, calls the function and asserts
what can fail). They are compared with the base-vs-tuned machinery (falsify.report.comparison:
paired bootstrap CI, exact McNemar).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

from falsify.report.comparison import RATES, Comparison, Question, Rate, compare
from trainer.files import iter_jsonl, write_atomic

POOL = Question("pool_rerank", "Would critic reranking pick better tests from a labelled pool?", "critic reranking",
                "random candidate", "critic-reranked")
GOOD_RATE = Rate("good_rate", True, lambda rec: 1.0 if rec["good"] else 0.0,
                 "share of functions whose chosen tests are labelled good")
POOL_RATES = (*RATES[:2], GOOD_RATE)  # compile_rate, pass_rate: the evaluator's own flags
PASSED = {"good", "trivial", "unrelated"}


class PoolError(ValueError):
    """The scored file cannot be read as critic-data rows with critic scores."""


def read_scored(path: Path) -> dict[str, list[dict]]:
    """Scored critic-data rows by function (the `id` before its `~intent`)."""
    by_function: dict[str, list[dict]] = defaultdict(list)
    for item in iter_jsonl(path):
        row = item.value
        if item.problem is not None or not isinstance(row, dict):
            raise PoolError(f"{path}:{item.line}: {item.problem or 'expected a JSON object'}")
        if not isinstance(row.get("id"), str) or not isinstance(row.get("label"), str) or "good" not in (row.get("critic") or {}):
            raise PoolError(f"{path}:{item.line}: a scored critic-data row needs 'id', 'label' and 'critic' with a 'good' "
                            "probability (python -m trainer critic score --samples experiments/critic-data/test.jsonl)")
        by_function[row["id"].rsplit("~", 1)[0]].append(row)
    return by_function


def as_record(function: str, row: dict) -> dict:
    label = row["label"]
    return {"id": function, "label": label, "compiles": label != "does_not_compile", "passes": label in PASSED,
            "good": label == "good", "p_good": row["critic"]["good"]}


def pool_sides(by_function: dict[str, list[dict]], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(random candidate, critic-reranked) records, one per function that has a choice."""
    first, reranked = [], []
    for function, rows in sorted(by_function.items()):
        if len(rows) < 2:
            continue
        drawn = random.Random(f"{seed}:{function}").randrange(len(rows))
        best = max(range(len(rows)), key=lambda i: rows[i]["critic"]["good"])
        first.append(as_record(function, rows[drawn]))
        reranked.append(as_record(function, rows[best]))
    return first, reranked


def pool_comparison(path: Path, seed: int = 0) -> tuple[Comparison, list[dict], list[dict]]:
    first, reranked = pool_sides(read_scored(path), seed)
    if not first:
        raise PoolError(f"{path}: no function has two or more scored candidates to choose between")
    return compare(first, reranked, POOL, POOL_RATES), first, reranked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m falsify.report.critic_pool", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scored", type=Path, required=True, help="trainer critic score output over critic-data rows")
    p.add_argument("--out", type=Path, required=True, help="where to write the comparison and both sides' picks (JSON)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random candidate per function (default 0)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        cmp, first, reranked = pool_comparison(args.scored, args.seed)
    except (PoolError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_atomic(args.out, json.dumps({"scored": str(args.scored), "seed": args.seed, "comparison": cmp,
                                       "random_candidate": first, "critic_reranked": reranked}, indent=1))
    print(f"{cmp['verdict']}: {cmp['sentence']} good rate {cmp['base']['good_rate']:.3f} -> {cmp['tuned']['good_rate']:.3f} "
          f"(95% CI of the difference [{cmp['delta']['good_rate']['ci95'][0]:+.3f}, {cmp['delta']['good_rate']['ci95'][1]:+.3f}]); "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Token lengths of the rendered training examples, to choose `data.max_seq_len` from data.

`python -m trainer.lengths --tokenizer DIR --data train.jsonl [--context]` prints the
distribution and, for candidate lengths, how many examples get truncated and how many
lose their whole answer (those are dropped by `build_examples`: no label left).
"""

from __future__ import annotations

import argparse
import json
import sys

from transformers import AutoTokenizer

from trainer.data import encode_chat, load_jsonl, prompt_for, record_context

CANDIDATES = (256, 384, 512, 768, 1024, 1536, 2048)
PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def example_lengths(tokenizer, records: list[dict], context: bool = False) -> list[tuple[int, int]]:
    """(whole example, prompt) token counts per record, untruncated, as training renders them."""
    out = []
    for rec in records:
        shown = record_context(rec) if context else ""
        whole = len(encode_chat(tokenizer, rec["input"], rec["output"], None, shown).input_ids)
        out.append((whole, len(tokenizer.encode(prompt_for(tokenizer, rec["input"], shown), add_special_tokens=False))))
    return out


def length_report(lengths: list[tuple[int, int]], candidates=CANDIDATES) -> dict:
    """Percentiles, and per candidate max_seq_len the fraction truncated and the count whose answer is cut away."""
    whole = sorted(n for n, _ in lengths)
    report = {"examples": len(whole), "max": whole[-1], **{f"p{q}": percentile(whole, q) for q in PERCENTILES}}
    report["at"] = {
        str(c): {"truncated": sum(n > c for n, _ in lengths) / len(lengths),
                 "answer_cut_away": sum(p >= c for _, p in lengths)}
        for c in candidates
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.lengths", description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a tokenizer directory (a model dir works)")
    parser.add_argument("--data", required=True, help="corpus jsonl")
    parser.add_argument("--context", action="store_true", help="render the crate context into the prompt")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    report = length_report(example_lengths(tokenizer, load_jsonl(args.data, args.limit), args.context))
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m trainer corpus critic --corpus DIR --out DIR`: the test critic's data, labelled by the evaluator.

For a sample of corpus functions this writes candidate test modules of known intent:

  good               the crate's own tests for the function;
  wrong_expectation  the same tests with one expected value of one `assert_eq!` changed;
  trivial            the same tests with every assertion made one that cannot fail
                     (`assert!((a) == (b) || true)`: still evaluated, never false);
  unrelated          the tests of another function of the same crate;
  foreign            the tests of a function of another crate (meant not to build).

Every candidate then runs through the in-crate evaluator (a build and one test run; no mutation,
no coverage), and its label is what the evaluator saw, not what was intended:

  - a candidate that does not build is `does_not_compile`, whatever it was meant to be;
  - `good` must pass; `wrong_expectation` must build and fail a test; `trivial` must pass with
    every assertion tautological or literal (the evaluator's own static count); `unrelated` and
    `foreign` must pass without calling the function;
  - anything else (a candidate that did not do what it was made for, or that the evaluator could
    not judge here: the crate's own build, a timeout) is dropped, and counted with its reason.

Splits are by crate, so the test split holds crates the critic never saw: the corpus's holdout
crates (the ones generation is measured on) and 15% of the others are the test split; another 15%
validation, the rest train, by a hash of the crate's name. Each split file holds `{"text", "label", ...}` lines that
`training.task: classify` reads; `critic_text` is the one definition of what the critic reads,
used again when it scores generated samples.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from trainer.corpus import rust_ast
from trainer.corpus.in_crate import appended_tests, has_location, in_crate_sample
from trainer.errors import TrainerError
from trainer.files import iter_jsonl, write_atomic, write_jsonl_atomic

LABELS = ("good", "wrong_expectation", "trivial", "unrelated", "does_not_compile")
# How often a sampled function gets each derived candidate (it always gets `good`). Uneven on
# purpose: real generations are not balanced, and the critic's class weights must cope with that.
MIX = {"wrong_expectation": 0.6, "trivial": 0.4, "unrelated": 0.3, "foreign": 0.35}
SPLITS = ("train", "validation", "test")
CORPUS_SPLITS = ("train", "validation", "test", "holdout")
# Evaluator failures that say nothing about the tests: the crate's own build, what this machine
# cannot run, a sandbox limit. Such candidates are dropped, not labelled.
NOT_JUDGEABLE = {"input", "forbidden_construct", "crate_build", "not_in_build", "timeout", "output", "disk_limit",
                 "internal", "harness_bypassed", "flaky", "no_tests"}
ASSERT_MACROS = {"assert", "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne",
                 "prop_assert", "prop_assert_eq", "prop_assert_ne"}


CRITIC_TEST_CHARS = 1200  # about 400 SmolLM2 tokens of Rust: the texts then fit the critic's max_seq_len whole
CRITIC_QUESTION = "// question: do these tests build, call the function above, and assert values that could fail?\n// answer:"


def critic_text(function_code: str, tests: str) -> str:
    """What the critic reads (building its data and scoring use this alone): the function's signature, the
    tests (cut at a line after CRITIC_TEST_CHARS), then a question.

    Not the body: a 135M critic does not execute it in its head, and the name and parameters are
    what tell tests that call the function from tests that do not. The question comes last
    because the classifier pools the last token: at the end of bare code that token's state
    barely depends on the text (the first critic's logits for a function's good and
    wrong-expectation tests agreed to two decimals). The first critic, on whole functions and no
    question, was at chance on unseen crates; this text (and 54 steps, not 30) gives AUROC 0.95
    between good and trivial tests there (README). The cut keeps the question inside
    max_seq_len, where right truncation would drop it.
    """
    tests = tests.strip()
    if len(tests) > CRITIC_TEST_CHARS:
        cut = tests.rfind("\n", 0, CRITIC_TEST_CHARS)
        tests = tests[: cut if cut > 0 else CRITIC_TEST_CHARS] + "\n// ... (the rest of the tests is cut)"
    return f"// function under test\n{rust_ast.signature(function_code.strip())}\n\n// tests\n{tests}\n\n{CRITIC_QUESTION}"


# ---------------------------------------------------------------- rewriting assertions


@dataclass
class AssertSite:
    name: str              # assert_eq, prop_assert, ...
    start: int             # byte offset of the macro name
    end: int               # byte offset just past the closing bracket
    args: list[tuple[int, int]]  # byte ranges of the top-level arguments


def assert_sites(tests: str) -> list[AssertSite]:
    """Every assertion macro call, parsed (`assert_eq!(..)`) or inside another macro's tokens
    (`proptest! { .. prop_assert!(..) .. }`), outermost only, in source order."""
    sites = rust_ast.macro_calls(rust_ast.parse(tests).root_node)
    found: list[AssertSite] = []
    for name, start, tree in sorted(sites, key=lambda s: s[1]):
        if name not in ASSERT_MACROS or (found and start < found[-1].end):
            continue  # not an assertion, or inside the previous one's arguments
        groups: list[list] = [[]]
        for child in tree.children[1:-1]:
            if child.type == ",":
                groups.append([])
            else:
                groups[-1].append(child)
        args = [(g[0].start_byte, g[-1].end_byte) for g in groups if g]
        found.append(AssertSite(name, start, tree.end_byte, args))
    return found


def _splice(data: bytes, edits: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(edits, reverse=True):
        data = data[:start] + new.encode("utf-8") + data[end:]
    return data.decode("utf-8")


def trivialize(tests: str) -> str | None:
    """Every assertion replaced by one that cannot fail but still evaluates its operands; None when
    the tests have no assertion to replace."""
    data = tests.encode("utf-8")
    edits = []
    for site in assert_sites(tests):
        args = [data[a:b].decode("utf-8") for a, b in site.args]
        prefix = "prop_assert" if site.name.startswith("prop_") else "assert"
        if site.name.endswith(("_eq", "_ne")):
            if len(args) < 2:
                return None
            op = "==" if site.name.endswith("_eq") else "!="
            new = f"{prefix}!(({args[0]}) {op} ({args[1]}) || true)"
        elif args:
            new = f"{prefix}!(({args[0]}) || true)"
        else:
            return None
        edits.append((site.start, site.end, new))
    return _splice(data, edits) if edits else None


_LITERALS = ("integer_literal", "float_literal", "boolean_literal", "string_literal", "char_literal")
_INTEGER = re.compile(r"^([0-9][0-9_]*)([iu](?:8|16|32|64|128|size))?$")
_FLOAT = re.compile(r"^([0-9][0-9_]*\.[0-9_]*(?:[eE][+-]?[0-9]+)?)(f32|f64)?$")


def _changed_literal(kind: str, text: str) -> str | None:
    """A different value of the same type, or None where this does not know one."""
    if kind == "integer_literal" and (m := _INTEGER.match(text)):
        return f"{int(m.group(1).replace('_', '')) + 1}{m.group(2) or ''}"
    if kind == "float_literal" and (m := _FLOAT.match(text)):
        return f"{float(m.group(1).replace('_', '')) + 1.5!r}{m.group(2) or ''}"
    if kind == "boolean_literal" or text in ("true", "false"):
        return "false" if text == "true" else "true"
    if kind == "string_literal" and text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[:-1] + '?"'
    if kind == "char_literal" and re.fullmatch(r"'[a-zA-Z0-9]'", text):
        c = text[1]
        return f"'{'a' if c == 'z' else 'A' if c == 'Z' else '0' if c == '9' else chr(ord(c) + 1)}'"
    return None


def perturb_expectation(tests: str, rng: random.Random) -> str | None:
    """One literal on the expected side of one `assert_eq!` changed; None when no assertion has a
    literal this can change. The expected side is the argument with literals in it (the second when
    both have some: `assert_eq!(actual, expected)` is the common order)."""
    data = tests.encode("utf-8")
    literals = [n for n in rust_ast.walk(rust_ast.parse(tests).root_node) if n.type in _LITERALS or n.type in ("true", "false")]
    choices = set()
    for site in assert_sites(tests):
        if not site.name.endswith("assert_eq") or len(site.args) < 2:
            continue
        inside = [[n for n in literals if a <= n.start_byte and n.end_byte <= b] for a, b in site.args[:2]]
        for n in inside[1] or inside[0]:
            new = _changed_literal(n.type if n.type in _LITERALS else "boolean_literal", rust_ast.text(n))
            if new is not None and new != rust_ast.text(n):
                choices.add((n.start_byte, n.end_byte, new))
    return _splice(data, [rng.choice(sorted(choices))]) if choices else None


# ---------------------------------------------------------------- candidates and labels


def _tests_of(rec: dict) -> str:
    return appended_tests(rec.get("metadata") or {}, rec["output"])


def _calls(tests: str, name: str) -> bool:
    """Whether the tests call the function: `name` may be a method's `Type::name`; calls are matched on the last segment."""
    return name.split("::")[-1] in rust_ast.called_names(rust_ast.parse(tests).root_node)


def candidates_for(rec: dict, by_crate: dict[str, list[dict]], rng: random.Random) -> list[dict]:
    """The candidates of one function: (intent, tests) with the evaluator sample each one is."""
    meta = rec["metadata"]
    name, crate = meta["function"], meta["crate"]
    own = _tests_of(rec)
    made = [("good", own)]
    if rng.random() < MIX["wrong_expectation"] and (t := perturb_expectation(own, rng)):
        made.append(("wrong_expectation", t))
    if rng.random() < MIX["trivial"] and (t := trivialize(own)):
        made.append(("trivial", t))
    if rng.random() < MIX["unrelated"]:
        others = [r for r in by_crate[crate] if r is not rec and not _calls(_tests_of(r), name)]
        if others:
            made.append(("unrelated", _tests_of(rng.choice(others))))
    if rng.random() < MIX["foreign"]:
        crates = sorted(c for c in by_crate if c != crate)
        if crates:
            made.append(("foreign", _tests_of(rng.choice(by_crate[rng.choice(crates)]))))
    out = []
    for intent, tests in made:
        sample = {"id": f"{meta['id']}~{intent}", "function_code": rec["input"], "generated_tests": tests,
                  "metadata": {**{k: v for k, v in meta.items() if k != "in_crate_tests"},
                               "critic": {"intent": intent, "function_id": meta["id"]}}}
        sample.update(in_crate_sample(meta, rec["input"]))
        out.append(sample)
    return out


def verified_label(sample: dict, verdict: dict) -> tuple[str | None, str]:
    """The label the evaluator's verdict supports for this candidate, or None and why it is dropped."""
    intent = sample["metadata"]["critic"]["intent"]
    failure = verdict.get("failure")
    if failure in NOT_JUDGEABLE:
        return None, f"not judgeable here ({failure})"
    if failure in ("parse", "compile"):
        return "does_not_compile", f"{failure} failure"
    passes = bool(verdict.get("passes"))
    if intent == "good":
        return ("good", "passes") if passes else (None, f"the crate's own tests did not pass ({failure})")
    if intent == "wrong_expectation":
        return ("wrong_expectation", "a test failed") if failure == "test_failure" else (None, "the changed value still passed")
    if intent == "trivial":
        a = verdict.get("assertions") or {}
        if passes and a.get("count", 0) > 0 and a.get("trivial", 0) + a.get("tautological", 0) >= a["count"]:
            return "trivial", "passes; every assertion is literal or tautological"
        return None, "not every assertion is one that cannot fail" if passes else f"did not pass ({failure})"
    called = _calls(sample["generated_tests"], sample["metadata"]["function"])
    if passes and not called:
        return "unrelated", "passes without calling the function"
    return None, "calls the function" if called else f"built but did not pass ({failure})"


def crate_split(crate: str, holdout_crates: set[str], share: float = 0.15) -> str:
    """test: the holdout crates, and `share` of the others; validation: another `share`; the rest train.
    By a stable hash of the name, so a crate never moves between runs."""
    bucket = int(hashlib.sha256(crate.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if crate in holdout_crates or bucket < share:
        return "test"
    return "validation" if bucket < 2 * share else "train"


# ---------------------------------------------------------------- the command


def load_corpus(corpus: Path) -> dict[str, list[dict]]:
    """Records per corpus split that say where their function is and carry tests."""
    out = {}
    for split in CORPUS_SPLITS:
        path = corpus / f"{split}.jsonl"
        if not path.is_file():
            raise TrainerError(f"corpus split not found: {path} (build it: python -m trainer corpus build --source DIR --out {corpus})")
        rows = []
        for item in iter_jsonl(path):
            if item.problem is not None:
                raise item.error(path)
            rec = item.value
            meta = rec.get("metadata") if isinstance(rec, dict) else None
            if not isinstance(meta, dict) or not isinstance(rec.get("input"), str) or not isinstance(rec.get("output"), str):
                raise item.error(path, "a corpus record needs string fields 'input' and 'output' and a 'metadata' object")
            if has_location(meta) and rec["output"].strip() and isinstance(meta.get("crate"), str):
                rows.append(rec)
        out[split] = rows
    return out


def choose_functions(records: list[dict], *, crates: int, per_crate: int, test_crates: set[str], seed: int,
                     max_chars: int) -> list[dict]:
    """Up to `per_crate` functions from each of up to `crates` crates: every test crate that has
    records, the rest drawn by seed, so the splits all get crates. Only functions whose code and
    tests fit `max_chars` together: generated tests are short, and evaluating long ones is slow."""
    rng = random.Random(seed)
    by_crate: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if len(rec["input"].strip()) + len(_tests_of(rec).strip()) <= max_chars:
            by_crate[rec["metadata"]["crate"]].append(rec)
    names = sorted(by_crate)
    rng.shuffle(names)
    chosen = [c for c in names if c in test_crates] + [c for c in names if c not in test_crates]
    picked = []
    for crate in chosen[:crates]:
        recs = sorted(by_crate[crate], key=lambda r: r["metadata"]["id"])
        rng.shuffle(recs)
        picked += recs[:per_crate]
    return picked


def run_evaluator(samples: Path, out: Path, jobs: int) -> Path:
    """The in-crate evaluator on the candidates (build and one test run); its samples.jsonl."""
    command = [sys.executable, "-m", "falsify.evaluate", "--samples", str(samples), "--out", str(out), "--jobs", str(jobs),
               "--no-mutation", "--no-coverage", "--reruns", "1"]
    done = subprocess.run(command, check=False)
    result = out / "samples.jsonl"
    if done.returncode != 0 or not result.is_file():
        raise TrainerError(f"the evaluator failed on {samples} (exit {done.returncode}): {' '.join(command)}")
    return result


VERDICTS = "verdicts.jsonl"  # every candidate's evaluator verdict, keyed by the candidate's content: a rerun reuses them


def _key(sample: dict) -> str:
    return hashlib.sha256(json.dumps(sample, sort_keys=True).encode()).hexdigest()


def earlier_verdicts(out: Path) -> dict[str, dict]:
    """The verdicts an earlier run in `out` got, by candidate content (a changed candidate is evaluated again)."""
    path = out / VERDICTS
    if not path.is_file():
        return {}
    return {item.value["key"]: item.value["verdict"] for item in iter_jsonl(path)
            if item.problem is None and isinstance(item.value, dict) and "key" in item.value}


def build_critic_data(corpus: Path, out: Path, *, crates: int, per_crate: int, seed: int, jobs: int, max_chars: int = 3000,
                      evaluate=run_evaluator) -> dict:
    """Candidates, the evaluator's verdicts, verified labels, the per-crate splits and a report (returned and written)."""
    splits = load_corpus(corpus)
    test_crates = {r["metadata"]["crate"] for r in splits["holdout"]}
    everything = [r for s in CORPUS_SPLITS for r in splits[s]]
    by_crate: dict[str, list[dict]] = defaultdict(list)
    for rec in everything:
        by_crate[rec["metadata"]["crate"]].append(rec)
    rng = random.Random(seed)
    chosen = choose_functions(everything, crates=crates, per_crate=per_crate, test_crates=test_crates, seed=seed,
                              max_chars=max_chars)
    if not chosen:
        raise TrainerError(f"{corpus}: no record has a crate location and tests to build critic data from")
    candidates = [c for rec in chosen for c in candidates_for(rec, by_crate, rng)]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "candidates.jsonl", candidates)
    started = time.perf_counter()
    known = earlier_verdicts(out)
    pending = [c for c in candidates if _key(c) not in known]
    if pending:
        write_jsonl_atomic(out / "pending.jsonl", pending)
        for item in iter_jsonl(evaluate(out / "pending.jsonl", out / "evaluation", jobs)):
            if item.problem is None and isinstance(item.value, dict):
                sample = next((c for c in pending if c["id"] == item.value.get("id")), None)
                if sample is not None:
                    known[_key(sample)] = item.value
    write_jsonl_atomic(out / VERDICTS, [{"key": _key(c), "id": c["id"], "verdict": known[_key(c)]} for c in candidates if _key(c) in known])
    verdicts = {c["id"]: known[_key(c)] for c in candidates if _key(c) in known}
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    dropped: Counter = Counter()
    for sample in candidates:
        verdict = verdicts.get(sample["id"])
        label, why = verified_label(sample, verdict) if verdict else (None, "no verdict from the evaluator")
        intent = sample["metadata"]["critic"]["intent"]
        if label is None:
            dropped[f"{intent}: {why}"] += 1
            continue
        crate = sample["metadata"]["crate"]
        rows[crate_split(crate, test_crates)].append({
            "text": critic_text(sample["function_code"], sample["generated_tests"]), "label": label, "id": sample["id"],
            "crate": crate, "intent": intent, "evidence": why})
    for split, split_rows in rows.items():
        write_jsonl_atomic(out / f"{split}.jsonl", split_rows)
    report = {"corpus": str(corpus), "seed": seed, "max_chars": max_chars, "functions": len(chosen),
              "verdicts_reused": len(candidates) - len(pending), "candidates": len(candidates),
              "evaluator_seconds": round(time.perf_counter() - started, 1), "test_crates": sorted(test_crates),
              "splits": {s: {"rows": len(r), "crates": sorted({x["crate"] for x in r}), "labels": dict(Counter(x["label"] for x in r))}
                         for s, r in rows.items()},
              "intent_to_label": {f"{i} -> {lab}": n for (i, lab), n in sorted(Counter(
                  (x["intent"], x["label"]) for r in rows.values() for x in r).items())},
              "dropped": dict(sorted(dropped.items()))}
    write_atomic(out / "critic_report.json", json.dumps(report, indent=1))
    return report


def main(argv: list[str]) -> int:
    """`corpus critic ...` (argv after `critic`)."""
    parser = argparse.ArgumentParser(prog="python -m trainer corpus critic", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True, type=Path, help="corpus directory (train/validation/test/holdout.jsonl)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--crates", type=int, default=40, help="crates to draw functions from (the holdout crates first)")
    parser.add_argument("--per-crate", type=int, default=15, help="functions per crate")
    parser.add_argument("--max-chars", type=int, default=3000, help="longest function + tests (characters together) to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="evaluator jobs")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        report = build_critic_data(args.corpus, args.out, crates=args.crates, per_crate=args.per_crate, seed=args.seed,
                                   jobs=args.jobs, max_chars=args.max_chars)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for split, s in report["splits"].items():
        print(f"{split}: {s['rows']} rows from {len(s['crates'])} crates, {s['labels']}")
    print(f"dropped: {sum(report['dropped'].values())} ({report['dropped']})")
    print(f"wrote {args.out}/{{train,validation,test}}.jsonl and critic_report.json")
    return 0

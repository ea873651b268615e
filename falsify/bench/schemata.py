"""Benchmark (a script, not a test): python -m falsify.bench schemata [--samples N] [--jobs J] [--pairs P].

Prints, warm (dependencies already compiled in the cache), on this machine:
1. wall time for N corpus-sized samples through compile + test + coverage + clippy +
   mutation, and the median seconds per sample of each phase;
2. mutant schemata against one build per mutant on the same functions, sequentially,
   with the check that every mutant gets the same verdict both ways, and the speed-up:
   P alternating pairs (which side goes first alternates), the ratio within each pair,
   median and range; rows (`--rows`): `standalone` (each function alone in a tiny crate),
   `in-crate` (each function inside its real crate, the evaluator's default: one build per
   mutant recompiles that crate; the fixture crate and, when on this machine, bytesize; a
   rebuild is ~1 s) and, only when asked, `in-crate-chrono` (one function of chrono 0.4.23, a
   holdout crate whose rebuild takes many seconds; its dependencies come from the cached template).
The samples are the ten hand-written functions of schemata_cases.FUNCTIONS, each repeated under
different ids (every copy is its own crate and is built from scratch; only the dependencies are shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trainer.files import read_jsonl

from .schemata_cases import FUNCTIONS, IN_CRATE, IN_CRATE_CHRONO, in_crate_cases

ROWS = ("standalone", "in-crate", "in-crate-chrono")

def bench_samples(n: int) -> list[dict]:
    names = sorted(FUNCTIONS)
    return [{"id": f"{names[i % len(names)]}-{i}", "function_code": FUNCTIONS[names[i % len(names)]][0],
             "generated_tests": FUNCTIONS[names[i % len(names)]][1]} for i in range(n)]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pipeline(n: int, jobs: int) -> None:
    from falsify.evaluate import evaluate_samples
    from falsify.evaluate.verdict import SAMPLES_FILE

    out = Path(tempfile.mkdtemp(prefix="rtf-bench-"))
    try:
        t0 = time.monotonic()
        summary = evaluate_samples(bench_samples(n), out, jobs=jobs)
        wall = time.monotonic() - t0
        records = read_jsonl(out / SAMPLES_FILE)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    phases = ("build", "test", "coverage", "mutation")  # clippy runs inside the build
    print(f"pipeline: {n} samples, jobs={jobs}, {os.cpu_count()} cores: wall {wall:.1f} s "
          f"({wall / n:.2f} s/sample of wall); pass_rate {summary['pass_rate']:.2f}, "
          f"mutation_score {summary['mutation_score']:.3f} over {summary['mutation_samples_run']} samples, "
          f"mutants {summary['mutants']}")
    print("  median seconds per sample (per worker): "
          + ", ".join(f"{p} {_median([r['timings'].get(p, 0.0) for r in records]):.2f}" for p in phases)
          + f", whole sample {summary['seconds_median']:.2f}")
    cpt = [r["timings"].get("build", 0) + r["timings"].get("test", 0) for r in records]
    print(f"  compile+test median {_median(cpt):.2f} s; mutation median "
          f"{_median([r['timings'].get('mutation', 0.0) for r in records]):.2f} s")


def schemata_vs_separate(pairs: int = 3, rows: tuple[str, ...] = ("standalone", "in-crate")) -> None:
    """Per row, `pairs` alternating pairs (schema first, then one build per mutant first, ...) over all its
    functions; the speed-up is the ratio within each pair, reported as median and range."""
    from falsify.evaluate.crate import Workspace
    from falsify.evaluate.run import claimed_uid
    from falsify.evaluate.toolchain import find_toolchain

    ws = Workspace(find_toolchain(), cargo_jobs=os.cpu_count() or 1)
    ws.warm()
    root = Path(tempfile.mkdtemp(prefix="rtf-bench-mut-"))
    os.chmod(root, 0o711)
    summaries = []
    try:
        with claimed_uid() as uid:  # every run kills its uid's leftovers: an unclaimed uid corrupts another evaluation
            for row in rows:  # in the order asked
                cases = (_standalone_cases(ws, uid) if row == "standalone"
                         else _in_crate_cases(ws, root, uid, IN_CRATE_CHRONO if row == "in-crate-chrono" else IN_CRATE))
                summaries.append(_row(row, cases, pairs, ws, root, uid))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for line in summaries:
        print(line)


def _standalone_cases(ws, uid: int) -> dict:
    """name -> (code, tests, prepare(dir) -> place or None): each function alone in its own crate."""
    from falsify.evaluate.crate import assemble

    def prepare(code, tests):
        return lambda d: ws.prepare(d, assemble(code, tests).source, uid)
    return {name: (code, tests, prepare(code, tests)) for name, (code, tests) in sorted(FUNCTIONS.items())}


def _in_crate_cases(ws, root: Path, uid: int, table: dict) -> dict:
    """name -> (code, tests, prepare(dir) -> place): each function in a copy of its crate, as the evaluator does."""
    from falsify.evaluate.crate_template import CrateTemplates
    from falsify.evaluate.prepare import in_crate_place, prepare_in_crate
    from falsify.evaluate.samples import CrateRef, Sample
    from falsify.evaluate.verdict import empty_record

    templates = CrateTemplates(ws, root / "staging", coverage=False)

    def prepare(name, code, tests, crate, file):
        def at(d: Path):
            sample = Sample(name, 1, code, tests, crate=CrateRef(str(crate), file))
            rec = empty_record(name, 1)
            prepared = prepare_in_crate(ws, templates, sample, rec, d, uid)
            if prepared is None:
                raise RuntimeError(f"in-crate {name}: not prepared: {rec.get('failure')} {rec.get('reason')}")
            return in_crate_place(prepared.copy, d)
        return at
    return {name: (code, tests, prepare(name, code, tests, crate, file))
            for name, (crate, file, code, tests) in in_crate_cases(table).items()}


def _row(row: str, cases: dict, pairs: int, ws, root: Path, uid: int) -> str:
    from falsify.evaluate.mutation_operators import find_mutants
    from falsify.evaluate.mutation_runner import run_schema, run_separately
    from falsify.evaluate.run import Options

    limits = Options().test_limits
    counts = {name: len(find_mutants(code)) for name, (code, _, _) in cases.items()}
    print(f"{row}: mutants per function: {', '.join(f'{n} {c}' for n, c in sorted(counts.items()))}; "
          f"total {sum(counts.values())}")
    ratios, schema_totals, plain_totals, mismatches = [], [], [], 0
    for pair in range(pairs):
        order = ("schema", "plain") if pair % 2 == 0 else ("plain", "schema")
        t_schema = t_plain = 0.0
        total = same = 0
        for name, (code, tests, prepare) in cases.items():
            dirs = {kind: root / f"{row}-{name.replace(':', '-')}-{kind}-{pair}" for kind in order}
            places = {kind: prepare(dirs[kind]) for kind in order}
            res, wall = {}, {}
            for kind in order:
                run = run_schema if kind == "schema" else run_separately
                t0 = time.monotonic()
                res[kind] = run(ws, dirs[kind], code, tests, uid=uid, limits=limits, original_seconds=0.0,
                                place=places[kind])
                wall[kind] = time.monotonic() - t0
            a, b = res["schema"], res["plain"]
            if not a.ran:
                print(f"  {name}: schema not run: {a.reason}")
            # build + mutant runs only: the original's build and calibration run are outside
            # both timings (the pipeline builds the original for its own verdict anyway)
            ts, tp = a.build_seconds + a.run_seconds, b.build_seconds + b.run_seconds
            t_schema += ts
            t_plain += tp
            agree = sum(a.verdicts.get(k) == v for k, v in b.verdicts.items())
            for k, v in sorted(b.verdicts.items()):
                if a.verdicts.get(k) != v:
                    print(f"  DIFFERENT {name} mutant {k} ({b.descriptions[k]}): schema {a.verdicts.get(k)}, separate {v}")
            total += len(b.verdicts)
            same += agree
            mismatches += len(b.verdicts) - agree
            unviable = sum(v == "unviable" for v in a.verdicts.values())
            timeouts = sum(v == "timeout" for v in a.verdicts.values())
            print(f"  [{row} {pair + 1}] {name:20s} mutants {len(b.verdicts):3d} ({unviable} unviable, {timeouts} timeout)  "
                  f"schema {ts:6.2f} s ({a.builds} builds)  one-build-per-mutant {tp:6.2f} s ({b.builds} builds)  "
                  f"identical verdicts {agree}/{len(b.verdicts)}  (wall {wall['schema']:.1f} / {wall['plain']:.1f} s)")
            for d in dirs.values():
                shutil.rmtree(d, ignore_errors=True)
        ratios.append(t_plain / t_schema)
        schema_totals.append(t_schema)
        plain_totals.append(t_plain)
        print(f"{row} pair {pair + 1} ({order[0]} first): schemata {t_schema:.1f} s, one build per mutant {t_plain:.1f} s, "
              f"speed-up {ratios[-1]:.1f}x, identical verdicts {same}/{total}")
    return (f"{row}: {len(cases)} functions, {sum(counts.values())} mutants: schemata median {_median(schema_totals):.1f} s, "
            f"one build per mutant median {_median(plain_totals):.1f} s; speed-up median {_median(ratios):.1f}x "
            f"(range {min(ratios):.1f}-{max(ratios):.1f}x over {len(ratios)} alternating pairs); "
            f"{mismatches} verdict mismatches over all pairs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m falsify.bench schemata")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-schemata", action="store_true")
    ap.add_argument("--pairs", type=int, default=3, help="alternating schema / one-build-per-mutant pairs")
    ap.add_argument("--rows", default="standalone,in-crate",
                    help="which rows of the schemata benchmark, comma-separated: standalone (each function alone), "
                         "in-crate (in its crate), in-crate-chrono (a function of chrono 0.4.23, slow to rebuild)")
    args = ap.parse_args(argv)
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if not set(rows) <= set(ROWS):
        ap.error(f"--rows: some of {', '.join(ROWS)}, not {args.rows!r}")
    if not args.skip_pipeline:
        pipeline(args.samples, args.jobs)
    if not args.skip_schemata:
        schemata_vs_separate(max(1, args.pairs), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

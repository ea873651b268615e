"""`python -m falsify.bench NAME [args...]`: every benchmark behind one entry point.

Each NAME is a module of this package with a `main(argv)`; its own `--help` lists its options.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "trl": "training: our train_step loop vs TRL's SFTTrainer, packing, MFU (needs the bench extra)",
    "monitor": "monitor overhead: the tiny model trained with and without the live monitor",
    "schemata": "evaluator: mutant schemata vs one build per mutant, and the pipeline's wall time",
    "generation": "generation: our batched greedy (KV cache) vs transformers' generate at batch 1, real model",
    "memory": "training: peak RSS of a real-model run with the LM head's loss chunked vs whole",
    "precision": "training: the same short run in fp32 and bf16-where-native: speed (CI) and loss agreement",
    "tier1": "tier-1 wall time: `pytest -m tier1` cold and warm, interleaved (needs a warm interpreter)",
}


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    return "\n".join(["usage: python -m falsify.bench NAME [args...]   (NAME --help: its options)", "",
                      "benchmarks (scripts that print numbers; nothing here is a test):",
                      *(f"  {name:<{width}}  {line}" for name, line in BENCHMARKS.items())])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"error: unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)}; python -m falsify.bench --help)",
              file=sys.stderr)
        return 2
    return importlib.import_module(f"falsify.bench.{name}").main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())

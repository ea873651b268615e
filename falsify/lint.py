"""`python -m falsify.lint [PATH ...]`: validate contracts and their bindings to checks and the rubric.

Exit 1 on any error (schema, duplicate ids, unknown check, unknown rubric item, a contract
without falsifiers, params a check does not accept); on success, print how many contracts
and falsifiers per tier were verified.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from falsify.contracts import ContractError, load_all

DEFAULT_PATHS = [Path("contracts")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falsify.lint", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="contract files or directories (default: contracts/)")
    parser.add_argument("--list-checks", action="store_true", help="list the check library with its params")
    args = parser.parse_args(argv)
    if args.list_checks:
        from falsify.checks import CHECKS

        for name, chk in sorted(CHECKS.items()):
            params = ", ".join(f"{p}={v.default!r}" if v.default is not v.empty else p for p, v in chk.params.items())
            print(f"{name}({params})\n    {chk.doc.splitlines()[0] if chk.doc else ''}")
        return 0
    try:
        contracts, errors = load_all(args.paths or DEFAULT_PATHS)
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not contracts and not errors:
        print(f"error: no contracts found in {', '.join(map(str, args.paths or DEFAULT_PATHS))}", file=sys.stderr)
        return 1
    tiers = Counter(f.tier for c in contracts for f in c.falsifiers)
    items = Counter(f.tier for c in contracts for f in c.falsifiers for _ in f.param_sets())
    summary = ", ".join(f"{t}: {tiers[t]} falsifiers ({items[t]} items)" for t in ("tier1", "tier2", "tier3"))
    status = "FAILED" if errors else "ok"
    print(f"lint {status}: {len(contracts)} contracts verified, {len(errors)} with errors; {summary}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Where each record goes: the train/validation/test split and the edge-case holdout.

The split is a hash of the record id and the seed, so a record keeps its split as the
corpus grows. The holdout is made of whole crates, drawn by seed until each of four
edge-case categories (SPEC: Corpus) has enough functions (`select_holdout`); it takes up
to HOLDOUT_PER_CATEGORY records of each category from them.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from trainer.corpus import rust_ast
from trainer.corpus.scan import Candidate, base_type_name, mentions
from trainer.corpus.standalone import PRELUDE

SPLITS = (("train", 80), ("validation", 10), ("test", 10))  # percent of hash buckets
# Filled in this order, so the rarest category picks first when a record fits several.
HOLDOUT_CATEGORIES = ("async", "generics_lifetimes", "error_handling", "std_like")
HOLDOUT_PER_CATEGORY = 50
# A category's target is capped at this share of its functions, so training keeps the rest
# (the corpus has about 75 async functions, most in two crates).
HOLDOUT_MAX_SHARE = 0.5


def _seeded_hash(seed: int, ident: str) -> int:
    """A stable 64-bit hash of `ident` under `seed` (not Python's hash(): that changes per process)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{ident}".encode()).digest()[:8], "big")


def split_of(ident: str, seed: int) -> str:
    """The split ("train", "validation" or "test") of the record with id `ident`."""
    bucket = _seeded_hash(seed, ident) % 100
    for name, percent in SPLITS:
        if bucket < percent:
            return name
        bucket -= percent
    raise AssertionError("SPLITS must sum to 100")


def holdout_targets(records: list[dict]) -> dict[str, int]:
    """How many functions of each category the held-out crates must supply:
    HOLDOUT_PER_CATEGORY, or HOLDOUT_MAX_SHARE of the category (rounded up) where that is less."""
    counts = Counter(c for r in records for c in r["metadata"]["categories"])
    return {c: min(HOLDOUT_PER_CATEGORY, math.ceil(counts[c] * HOLDOUT_MAX_SHARE)) for c in HOLDOUT_CATEGORIES}


def _in_turn(pool: list[dict], seed: int) -> list[dict]:
    """Self-contained records first (they also work standalone), then the crates in turn
    (each crate's records by hash of id and seed), so one big crate does not fill a category alone."""
    turns: Counter[str] = Counter()
    keyed = []
    for rec in sorted(pool, key=lambda r: (_seeded_hash(seed, r["metadata"]["id"]), r["metadata"]["id"])):
        meta = rec["metadata"]
        keyed.append(((not meta["self_contained"], turns[meta["crate"]], _seeded_hash(seed, meta["id"]), meta["id"]), rec))
        turns[meta["crate"]] += 1
    return [rec for _, rec in sorted(keyed, key=lambda kr: kr[0])]


def fill_holdout(records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Up to HOLDOUT_PER_CATEGORY of `records` per category, one category per record: the
    categories pick in HOLDOUT_CATEGORIES order (rarest first), each in `_in_turn` order."""
    taken: set[str] = set()
    chosen: dict[str, list[dict]] = {}
    for category in HOLDOUT_CATEGORIES:
        pool = [r for r in records if category in r["metadata"]["categories"] and r["metadata"]["id"] not in taken]
        chosen[category] = _in_turn(pool, seed)[:HOLDOUT_PER_CATEGORY]
        taken.update(r["metadata"]["id"] for r in chosen[category])
    return chosen


def select_holdout(records: list[dict], seed: int) -> tuple[list[str], dict[str, list[dict]]]:
    """(the held-out crates in the order picked, the holdout records by category).

    Whole crates are held out, so no test, helper or sibling of a holdout function is
    trained on. The rule: crates are ranked by a hash of name and seed. While some category
    has fewer held functions than its target (`holdout_targets`), the category furthest
    below it (as a share of its target; ties: the rarer category) takes the next crate in
    that ranking that has a function of it. A category no remaining crate can help stops
    asking. Every record of a held crate leaves train/validation/test; `fill_holdout` says
    which of them go into holdout.jsonl.
    """
    by_crate: dict[str, list[dict]] = {}
    for rec in records:
        by_crate.setdefault(rec["metadata"]["crate"], []).append(rec)
    ranking = sorted(by_crate, key=lambda name: (_seeded_hash(seed, f"crate:{name}"), name))
    targets = holdout_targets(records)
    held: list[str] = []
    filled = fill_holdout([], seed)
    exhausted: set[str] = set()
    while True:
        short = [c for c in HOLDOUT_CATEGORIES if len(filled[c]) < targets[c] and c not in exhausted]
        if not short:
            return held, filled
        need = max(short, key=lambda c: ((targets[c] - len(filled[c])) / targets[c], -HOLDOUT_CATEGORIES.index(c)))
        crate = next((name for name in ranking if name not in held
                      and any(need in r["metadata"]["categories"] for r in by_crate[name])), None)
        if crate is None:
            exhausted.add(need)
            continue
        held.append(crate)
        filled = fill_holdout([r for name in held for r in by_crate[name]], seed)


_STD_TRAITS = {
    "Iterator", "DoubleEndedIterator", "ExactSizeIterator", "IntoIterator", "FromIterator", "Extend",
    "From", "TryFrom", "FromStr", "Display", "Debug", "Default", "Clone", "PartialEq", "Eq",
    "PartialOrd", "Ord", "Hash", "Hasher", "Deref", "DerefMut", "Index", "IndexMut", "AsRef", "AsMut",
    "Borrow", "BorrowMut", "Add", "Sub", "Mul", "Div", "Rem", "Neg", "Not", "BitAnd", "BitOr", "BitXor",
    "Shl", "Shr", "AddAssign", "SubAssign", "MulAssign", "DivAssign", "Read", "Write", "BufRead",
    "Seek", "Drop", "Error",
}
_STD_TYPES = PRELUDE | {
    "HashMap", "HashSet", "BTreeMap", "BTreeSet", "VecDeque", "BinaryHeap", "Rc", "Arc", "Cell",
    "RefCell", "Cow", "Ordering", "Duration", "Path", "PathBuf", "Formatter", "Error",
}


def holdout_categories(candidate: Candidate, flags: dict[str, bool]) -> list[str]:
    """Which of the four holdout categories (SPEC: Corpus) a function belongs to.

    async: `async fn`, async blocks or `.await`. generics_lifetimes: type parameters,
    `impl Trait`, where clauses or lifetimes. error_handling: returns `Result`/`Option` or
    uses `?`. std_like: implements a std trait (Iterator, Display, From, Ord, ...), or is a
    free function whose signature only uses primitive and std types (like a std function).
    """
    fn = candidate.node
    cats = []
    if flags["is_async"]:
        cats.append("async")
    if flags["has_generics"] or flags["has_lifetimes"]:
        cats.append("generics_lifetimes")
    ret = fn.child_by_field_name("return_type")
    ret_names = mentions(ret) if ret is not None else set()
    if {"Result", "Option"} & ret_names or any(n.type == "try_expression" for n in rust_ast.walk(fn)):
        cats.append("error_handling")
    impl = fn.parent.parent if fn.parent is not None else None
    trait = base_type_name(impl.child_by_field_name("trait")) if impl is not None and impl.type == "impl_item" else None
    params = fn.child_by_field_name("parameters")
    sig_types = {rust_ast.text(n) for part in (params, ret) if part is not None
                 for n in rust_ast.walk(part) if n.type == "type_identifier"}
    if trait in _STD_TRAITS or (candidate.owner is None and sig_types <= _STD_TYPES):
        cats.append("std_like")
    return [c for c in HOLDOUT_CATEGORIES if c in cats]

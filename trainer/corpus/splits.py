"""Where each record goes: the train/validation/test split and the edge-case holdout.

The split is a hash of the record id and the seed, so a record keeps its split as the
corpus grows. The holdout takes up to HOLDOUT_PER_CATEGORY records of each of four
edge-case categories (SPEC: Corpus) out of the splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from trainer.corpus import rust_ast
from trainer.corpus.scan import Candidate, base_type_name, mentions
from trainer.corpus.standalone import PRELUDE

SPLITS = (("train", 80), ("validation", 10), ("test", 10))  # percent of hash buckets
# Filled in this order, so the rarest category picks first when a record fits several.
HOLDOUT_CATEGORIES = ("async", "generics_lifetimes", "error_handling", "std_like")
HOLDOUT_PER_CATEGORY = 50


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


def select_holdout(records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Up to HOLDOUT_PER_CATEGORY records per category, in preference order.

    Self-contained ones first; then ones whose tests pair with no other function (a
    holdout record's tests must not appear in training, so every record sharing them is
    dropped from the splits: this keeps that loss small); then by hash of id and seed.
    """
    users = Counter(k for r in records for k in r["_tests"])
    taken: set[str] = set()
    chosen: dict[str, list[dict]] = {}
    for category in HOLDOUT_CATEGORIES:
        pool = [r for r in records if category in r["metadata"]["categories"] and r["metadata"]["id"] not in taken]
        pool.sort(key=lambda r: (not r["metadata"]["self_contained"], any(users[k] > 1 for k in r["_tests"]),
                                 _seeded_hash(seed, r["metadata"]["id"]), r["metadata"]["id"]))
        chosen[category] = pool[:HOLDOUT_PER_CATEGORY]
        taken.update(r["metadata"]["id"] for r in chosen[category])
    return chosen


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

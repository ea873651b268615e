"""The corpus builder on a small fake registry (two crates of real Rust) and on the real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.__main__ import main as cli
from trainer.corpus import splits
from trainer.corpus.build import build_corpus
from trainer.corpus.crates import version_key
from trainer.corpus.splits import HOLDOUT_CATEGORIES, select_holdout, split_of

MATHY_LIB = r'''
use std::collections::HashMap;

pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub fn largest<T: PartialOrd + Copy>(xs: &[T]) -> Option<T> {
    let mut best = *xs.first()?;
    for &x in xs {
        if x > best {
            best = x;
        }
    }
    Some(best)
}

pub async fn fetch_twice(x: u32) -> u32 {
    x * 2
}

pub fn word_counts(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

pub fn untested(x: u8) -> u8 {
    x
}

pub struct Counter {
    n: u32,
}

impl Counter {
    pub fn new() -> Self {
        Counter { n: 0 }
    }

    pub fn bump(&mut self) -> u32 {
        self.n += 1;
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_basic() {
        assert_eq!(gcd(12, 18), 6);
    }

    #[test]
    fn counter_bumps() {
        let mut c = Counter::new();
        assert_eq!(c.bump(), 1);
    }

    #[test]
    #[should_panic]
    fn largest_of_empty_panics() {
        let empty: [u8; 0] = [];
        largest(&empty).unwrap();
    }

    #[test]
    fn fetch_is_lazy() {
        let fut = fetch_twice(2);
        drop(fut);
    }

    #[test]
    fn counts_words() {
        assert_eq!(word_counts("a b a")["a"], 2);
    }

    proptest! {
        #[test]
        fn gcd_divides_both(a in 1u64..1000, b in 1u64..1000) {
            let g = gcd(a, b);
            prop_assert_eq!(a % g, 0);
            prop_assert_eq!(b % g, 0);
        }
    }
}
'''

MATHY_TESTS = r'''
use mathy::parse_num;

#[test]
fn parses_trimmed() {
    assert_eq!(parse_num(" 42 ").unwrap(), 42);
}
'''

MATHY_PARSE = r'''
pub fn parse_num(s: &str) -> Result<u32, std::num::ParseIntError> {
    s.trim().parse()
}
'''

STRS_LIB = r'''
pub fn shout(s: &str) -> String {
    s.to_uppercase()
}

pub fn shout_twice(s: &str) -> String {
    let once = shout(s);
    format!("{once}{once}")
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! check {
        ($name:ident, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(shout($input), $want);
            }
        };
    }

    check!(shouts_a, "a", "A");
    check!(shouts_word, "hey", "HEY");

    #[test]
    fn twice() {
        assert_eq!(shout_twice("x"), "XX");
    }
}
'''


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def registry(tmp_path) -> Path:
    """A Debian-style registry: mathy 0.1.0 and 0.2.0 (newest wins), strs 1.0.0."""
    root = tmp_path / "registry"
    write(root / "mathy-0.1.0/src/lib.rs", "pub fn old_only() {}\n#[test]\nfn t() { old_only(); }\n")
    write(root / "mathy-0.2.0/Cargo.toml", '[package]\nname = "mathy"\nversion = "0.2.0"\n')
    write(root / "mathy-0.2.0/src/lib.rs", MATHY_LIB)
    write(root / "mathy-0.2.0/src/parse.rs", MATHY_PARSE)
    write(root / "mathy-0.2.0/tests/parse.rs", MATHY_TESTS)
    write(root / "mathy-0.2.0/src/broken.rs", "pub fn broken( {\n    let = ;\n")
    write(root / "mathy-0.2.0/src/latin1.rs", b"// caf\xe9 au lait\npub fn latin() {}\n")
    write(root / "strs-1.0.0/src/lib.rs", STRS_LIB)
    write(root / "not-a-crate/src/lib.rs", "pub fn ignored() {}\n")
    return root


def read_split(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def all_records(out: Path) -> dict[str, dict]:
    records = {}
    for name in ("train", "validation", "test", "holdout"):
        for rec in read_split(out, name):
            assert rec["metadata"]["id"] not in records, f"{rec['metadata']['id']} appears twice"
            records[rec["metadata"]["function"]] = rec
    return records


def test_pairs_and_metadata(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 0)  # no crate held out: every record lands in a split
    report = build_corpus(registry, tmp_path / "out", crates="all")
    recs = all_records(tmp_path / "out")

    assert set(recs) == {"gcd", "largest", "fetch_twice", "word_counts", "Counter::new", "Counter::bump",
                         "parse_num", "shout", "shout_twice"}  # untested and old_only are absent
    gcd = recs["gcd"]["metadata"]
    assert recs["gcd"]["input"].startswith("pub fn gcd(a: u64, b: u64) -> u64 {")
    assert "fn gcd_basic()" in recs["gcd"]["output"] and "proptest! {" in recs["gcd"]["output"]
    assert (gcd["n_tests"], gcd["has_proptest"], gcd["self_contained"]) == (2, True, True)
    assert gcd["crate"] == "mathy" and gcd["crate_version"] == "0.2.0" and gcd["file"] == "src/lib.rs"
    assert gcd["id"] == "mathy/src/lib.rs::gcd#0"
    assert gcd["crate_dir"] == str(registry / "mathy-0.2.0") and gcd["function_span"]["start_line"] == 4
    assert gcd["in_crate_tests"].startswith("use super::*;\n\n#[test]\nfn gcd_basic()")
    assert gcd["cyclomatic_complexity"] == 2 and not gcd["has_generics"] and not gcd["is_async"]

    largest = recs["largest"]
    assert largest["output"].startswith("#[test]\n#[should_panic]\nfn largest_of_empty_panics()")
    assert largest["metadata"]["has_generics"] and largest["metadata"]["cyclomatic_complexity"] == 4
    assert {"generics_lifetimes", "error_handling"} <= set(largest["metadata"]["categories"])

    fetch = recs["fetch_twice"]["metadata"]
    assert fetch["is_async"] and fetch["categories"][0] == "async"

    # A test in tests/ pairs with a function in another file; the use of `mathy::` is
    # outside the test, and ParseIntError is reached by a std path: self-contained.
    parse = recs["parse_num"]
    assert "fn parses_trimmed()" in parse["output"] and parse["metadata"]["file"] == "src/parse.rs"
    assert "error_handling" in parse["metadata"]["categories"] and parse["metadata"]["self_contained"]

    # HashMap comes from the module's `use std::collections::HashMap;`, recorded for rebuilding.
    counts = recs["word_counts"]["metadata"]
    assert counts["std_uses"] == ["use std::collections::HashMap;"] and counts["self_contained"]

    # Methods pair only with tests naming their type, and are never self-contained.
    bump = recs["Counter::bump"]
    assert "fn counter_bumps()" in bump["output"] and bump["metadata"]["owner"] == "Counter"
    assert not bump["metadata"]["self_contained"]

    # A test-generating macro travels with its invocations.
    shout = recs["shout"]
    assert shout["output"].startswith("macro_rules! check {") and "check!(shouts_word" in shout["output"]
    assert "fn twice()" not in shout["output"]
    assert not recs["shout_twice"]["metadata"]["self_contained"]  # calls shout, which its tests lack

    assert report["pairs"] == 9 and report["self_contained"] == sum(r["metadata"]["self_contained"] for r in recs.values())
    assert report["crates"] == {"mathy": {"held_out": False, "pairs": 7, "tests_not_buildable_here": 0, "version": "0.2.0"},
                                "strs": {"held_out": False, "pairs": 2, "tests_not_buildable_here": 0, "version": "1.0.0"}}
    assert report["holdout_crates"] == [] and report["holdout_total"] == 0


def test_broken_and_non_utf8_files_are_counted_not_fatal(registry, tmp_path, capsys):
    report = build_corpus(registry, tmp_path / "out", crates="all")
    assert report["skipped_file_reasons"] == {"non_utf8": 1, "syntax_error": 1}
    assert {s["file"] for s in report["skipped_files"]} == {"mathy-0.2.0/src/broken.rs", "mathy-0.2.0/src/latin1.rs"}
    err = capsys.readouterr().err
    assert "broken.rs (syntax_error)" in err and "latin1.rs (non_utf8)" in err


@pytest.mark.parametrize("seed", [0, 5])
def test_same_sources_and_seed_give_byte_identical_files(registry, tmp_path, seed, monkeypatch):
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 1)  # one crate held out, one in the splits
    build_corpus(registry, tmp_path / "a", crates="all", seed=seed)
    build_corpus(registry, tmp_path / "b", crates="all", seed=seed)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["corpus_report.json", "holdout.jsonl", "test.jsonl", "train.jsonl", "validation.jsonl"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "holdout.jsonl").read_bytes() and (tmp_path / "a" / "train.jsonl").read_bytes()


def test_holdout_is_whole_crates_left_out_of_the_splits(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 1)
    report = build_corpus(registry, tmp_path / "out", crates="all")
    out = tmp_path / "out"
    holdout = read_split(out, "holdout")
    split_recs = [r for name in ("train", "validation", "test") for r in read_split(out, name)]

    assert report["holdout_crates"] == ["mathy"]  # it alone has an async function: the rarest category asks first
    assert {r["metadata"]["crate"] for r in holdout} == {"mathy"} and len(holdout) == len(HOLDOUT_CATEGORIES)
    assert not {r["metadata"]["crate"] for r in split_recs} & set(report["holdout_crates"])
    assert report["crates"]["mathy"]["held_out"] and not report["crates"]["strs"]["held_out"]
    for rec in holdout:
        assert rec["metadata"]["holdout_category"] in rec["metadata"]["categories"]
    assert [r["metadata"]["holdout_category"] for r in holdout] == list(HOLDOUT_CATEGORIES)  # interleaved
    assert report["pairs"] == sum(report["splits"].values()) + report["holdout_total"] + report["held_out_not_in_holdout"]
    for name in ("train", "validation", "test"):
        assert all(split_of(r["metadata"]["id"], 0) == name for r in read_split(out, name))


def fake_records(spec: dict[str, dict[str, int]]) -> list[dict]:
    """Records of crates with so many functions per category: {"crate": {"async": 2}}."""
    return [{"metadata": {"id": f"{crate}/src/lib.rs::{cat}{i}#0", "crate": crate, "categories": [cat], "self_contained": False}}
            for crate, cats in spec.items() for cat, n in cats.items() for i in range(n)]


def test_holdout_crates_fill_every_category_by_the_stated_rule(monkeypatch):
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 3)
    spec = {f"c{i}": {HOLDOUT_CATEGORIES[i % 4]: 2, "std_like": 1} for i in range(12)} | {"big": {c: 9 for c in HOLDOUT_CATEGORIES}}
    records = fake_records(spec)
    for seed in range(6):
        held, filled = select_holdout(records, seed)
        assert select_holdout(records, seed) == (held, filled)  # deterministic
        targets = splits.holdout_targets(records)
        assert targets == dict.fromkeys(HOLDOUT_CATEGORIES, 3)
        assert all(len(filled[c]) >= targets[c] for c in HOLDOUT_CATEGORIES)
        assert {r["metadata"]["crate"] for rs in filled.values() for r in rs} <= set(held)
        # The last crate taken was needed: without it some category falls short of its target.
        before = splits.fill_holdout([r for r in records if r["metadata"]["crate"] in held[:-1]], seed)
        assert any(len(before[c]) < targets[c] for c in HOLDOUT_CATEGORIES)
        # The first crate is the first in the seeded ranking that has the rarest category (async asks first).
        ranking = sorted(spec, key=lambda name: (splits._seeded_hash(seed, f"crate:{name}"), name))
        assert held[0] == next(name for name in ranking if "async" in spec[name])
    assert len({tuple(select_holdout(records, seed)[0]) for seed in range(6)}) > 1  # the seed changes the draw


def test_holdout_targets_keep_half_of_a_rare_category_for_training(monkeypatch):
    records = fake_records({"a": {"async": 3}, "b": {"async": 2, "std_like": 200}})
    assert splits.holdout_targets(records) == {"async": 3, "generics_lifetimes": 0, "error_handling": 0, "std_like": 50}
    held, filled = select_holdout(records, 0)
    assert len(filled["async"]) >= 3 and len(filled["std_like"]) == 50
    assert set(held) == {"a", "b"}  # b alone has 2 of the 3 async functions the target asks for


def test_holdout_prefers_self_contained_then_takes_the_crates_in_turn(monkeypatch):
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 4)
    records = fake_records({"big": {"async": 10}, "small": {"async": 2}})
    records[3]["metadata"]["self_contained"] = True
    chosen = splits.fill_holdout(records, seed=0)["async"]
    assert chosen[0] is records[3]
    assert [r["metadata"]["crate"] for r in chosen].count("small") == 2  # one big crate does not fill it alone


def test_crate_list_restricts_and_reports_missing(registry, tmp_path):
    report = build_corpus(registry, tmp_path / "out", crates=["strs", "nosuch"])
    assert set(report["crates"]) == {"strs"} and report["missing_crates"] == ["nosuch"]
    assert report["pairs"] == 2


def test_newest_version_wins():
    assert version_key("1.0.0-alpha.5") < version_key("1.0.0") < version_key("1.0.10")
    assert version_key("0.9.9") < version_key("0.10.0")


def test_cli_builds_and_prints_summary(registry, tmp_path, capsys):
    crate_list = tmp_path / "crates.txt"
    crate_list.write_text("# comment\nmathy\n", encoding="utf-8")
    rc = cli(["corpus", "build", "--source", str(registry), "--out", str(tmp_path / "out"),
              "--crates", str(crate_list), "--seed", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "corpus: 7 pairs from 1 crates" in out and "holdout:" in out
    assert json.loads((tmp_path / "out/corpus_report.json").read_text())["seed"] == 3
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_missing_source_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    rc = cli(["corpus", "build", "--source", str(missing), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and str(missing) in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_no_crates_and_unwritable_out_are_errors(registry, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["corpus", "build", "--source", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no crates found under" in capsys.readouterr().err

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli(["corpus", "build", "--source", str(registry), "--out", str(blocker / "sub"), "--crates", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write corpus output directory") and str(blocker / "sub") in err

    assert cli(["corpus", "build", "--source", str(registry), "--out", str(tmp_path / "o"),
                "--crates", str(tmp_path / "no-list.txt")]) == 2
    assert "cannot read crate list" in capsys.readouterr().err


REGISTRY = Path("/usr/share/cargo/registry")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_registry_with_shipped_crate_list(tmp_path):
    if not REGISTRY.is_dir():
        pytest.skip(f"{REGISTRY} missing: run `make setup` (installs the librust-*-dev crates)")
    report = build_corpus(REGISTRY, tmp_path / "out")
    assert report["missing_crates"] == [], "every crate of trainer/corpus/crates.txt should be installed"
    assert report["splits"]["train"] >= 3000 and report["splits"]["validation"] >= 300
    assert all(report["holdout"][c] >= report["holdout_targets"][c] > 0 for c in HOLDOUT_CATEGORIES), report["holdout"]
    held = set(report["holdout_crates"])
    assert held and not any(r["metadata"]["crate"] in held for name in ("train", "validation", "test")
                            for r in read_split(tmp_path / "out", name))
    assert report["self_contained"] >= 10 and report["with_proptest"] >= 1
    # a listed crate yields pairs, unless its tests need dev-dependencies the registry lacks (byteorder: quickcheck 0.9)
    assert all(v["pairs"] > 0 or v["tests_not_buildable_here"] > 0 for v in report["crates"].values()), report["crates"]
    first = read_split(tmp_path / "out", "train")[0]
    assert first["input"].lstrip().split("(")[0].split()[-1] in first["metadata"]["function"]

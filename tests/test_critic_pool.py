"""falsify.report.critic_pool: the critic choosing within a labelled pool, against a random candidate, paired."""

from __future__ import annotations

import json

from falsify.report import critic_pool

LABELS = ["good", "wrong_expectation", "trivial", "does_not_compile"]


def scored_rows(p_good_of, functions: int = 40) -> list[dict]:
    """Each function has one candidate of each label; `p_good_of(label)` is the critic's P(good) for it."""
    return [{"id": f"crate/src/lib.rs::f{i}#0~{label}", "label": label, "critic": {"good": p_good_of(label), "trivial": 0.0}}
            for i in range(functions) for label in LABELS]


def write(tmp_path, rows) -> str:
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_a_critic_that_ranks_good_first_helps_and_one_that_ranks_it_last_hurts(tmp_path, capsys):
    knows = write(tmp_path, scored_rows(lambda label: {"good": 0.9, "trivial": 0.5}.get(label, 0.1)))
    out = tmp_path / "pool.json"
    assert critic_pool.main(["--scored", knows, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    cmp = result["comparison"]
    assert cmp["n"] == 40 and cmp["tuned"]["good_rate"] == 1.0 and cmp["verdict"] == "helped"
    assert 0 < cmp["base"]["good_rate"] < 0.5  # a random one of four candidates: about a quarter are good
    assert cmp["delta"]["good_rate"]["ci95"][0] > 0 and cmp["delta"]["good_rate"]["test"] == "mcnemar_exact"
    assert all(r["label"] == "good" for r in result["critic_reranked"])
    assert "helped" in capsys.readouterr().out
    write(tmp_path, scored_rows(lambda label: {"does_not_compile": 0.9}.get(label, 0.1)))  # prefers what does not build
    cmp, _, _ = critic_pool.pool_comparison(tmp_path / "scored.jsonl")
    assert cmp["tuned"]["compile_rate"] == 0.0 and cmp["verdict"] == "hurt"


def test_the_random_side_is_seeded_and_functions_without_a_choice_are_left_out(tmp_path):
    rows = scored_rows(lambda label: 0.5) + [{"id": "crate/src/lib.rs::alone#0~good", "label": "good", "critic": {"good": 1.0}}]
    write(tmp_path, rows)
    first_a, _ = critic_pool.pool_sides(critic_pool.read_scored(tmp_path / "scored.jsonl"), seed=3)
    first_b, reranked = critic_pool.pool_sides(critic_pool.read_scored(tmp_path / "scored.jsonl"), seed=3)
    assert first_a == first_b and len(first_a) == 40
    assert {r["label"] for r in first_a} == set(LABELS)  # drawn, not the rows' order
    assert all(r["label"] == "good" for r in reranked)  # equal scores: the first row, which is the good one here


def test_rows_without_scores_are_one_line_naming_the_line(tmp_path, capsys):
    path = write(tmp_path, [{"id": "a~good", "label": "good"}])
    assert critic_pool.main(["--scored", path, "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scored.jsonl:1" in err[0] and "critic score" in err[0]
    assert not (tmp_path / "o.json").exists()

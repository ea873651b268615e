"""`trainer generate --candidates N --critic DIR`: N sampled candidates per function, the one the critic rates
most likely `good` kept, each function's first candidate written beside it for the paired comparison."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from trainer.__main__ import main
from trainer.errors import TrainerError
from trainer.generate import first_candidates_path, generate_file, rerank

LABELS = ["good", "wrong_expectation", "trivial"]


class LengthCritic:
    """Stands in for trainer.critic.Critic: P(good) grows with the length of the tests it reads."""

    labels = LABELS
    checkpoint = "length-critic"

    def __init__(self, *_args, **_kwargs):
        self.calls = 0

    def probabilities(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        good = np.array([1 - 1 / (2 + len(t.split("// tests", 1)[1])) for t in texts])
        return np.stack([good, (1 - good) / 2, (1 - good) / 2], axis=1)


def record(tests: str) -> dict:
    return {"function_code": "fn f() -> u8 { 1 }", "generated_tests": tests}


def test_rerank_keeps_the_highest_p_good_and_never_an_empty_candidate():
    critic = LengthCritic()
    best, p_good = rerank(critic, [record("#[test] fn a() {}"), record(""), record("#[test] fn longest() { assert_eq!(f(), 1); }")])
    assert best == 2 and p_good[1] is None and p_good[2] > p_good[0]
    assert critic.calls == 1  # one batch for all the candidates of a function


def test_rerank_takes_the_first_of_equal_scores_and_the_first_when_none_has_code():
    assert rerank(LengthCritic(), [record("same"), record("same")])[0] == 0
    assert rerank(LengthCritic(), [record(""), record("  ")]) == (0, [None, None])


def test_candidates_and_critic_go_together(tmp_path):
    for kwargs in ({"candidates": 3}, {"critic": tmp_path}, {"candidates": 0}):
        with pytest.raises(TrainerError, match="candidates"):
            generate_file(tmp_path / "no-experiment", tmp_path / "in.jsonl", tmp_path / "out.jsonl", **kwargs)


@pytest.fixture(scope="module")
def generator(tmp_path_factory, tiny_data):
    from tests.conftest import fast_config
    from trainer.train import train

    exp = tmp_path_factory.mktemp("rerank") / "exp"
    train(fast_config(tiny_data), exp)
    return exp, tiny_data


@pytest.mark.slow
def test_greedy_decoding_with_candidates_is_refused_in_one_line(generator, tmp_path, capsys):
    exp, data = generator
    code = main(["generate", "--experiment", str(exp), "--input", str(data["validation"]), "--out", str(tmp_path / "o.jsonl"),
                 "--candidates", "2", "--critic", str(tmp_path), "--temperature", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: ") and "--temperature" in err and "2 copies" in err


@pytest.mark.slow
def test_generate_keeps_the_critics_choice_and_writes_the_first_candidates(generator, tmp_path, monkeypatch):
    import trainer.generate as generate

    exp, data = generator
    monkeypatch.setattr(generate, "Critic", LengthCritic)
    sample = generate.generate_batch

    def as_tests(*args, **kwargs):
        """The tiny model's sampled text, made Rust: 1 to 5 tests, as many as its checksum says, so different
        samples give candidates of different lengths for the length critic to choose between."""
        texts, counts, seconds = sample(*args, **kwargs)
        made = ["```rust\n" + "".join(f"#[test]\nfn t{k}() {{}}\n" for k in range(zlib.crc32(t.encode()) % 5 + 1)) + "```"
                for t in texts]
        return made, counts, seconds

    monkeypatch.setattr(generate, "generate_batch", as_tests)
    out = tmp_path / "samples.jsonl"
    summary = generate_file(exp, data["validation"], out, limit=4, candidates=3, critic=tmp_path, temperature=1.5, batch_size=2)
    chosen = [json.loads(line) for line in out.read_text().splitlines()]
    first = [json.loads(line) for line in first_candidates_path(out).read_text().splitlines()]
    assert [r["id"] for r in chosen] == [r["id"] for r in first] and len(chosen) == 4
    scorer = LengthCritic()
    from trainer.corpus.critic import critic_text

    def p_good(rec: dict) -> float | None:
        tests = rec["generated_tests"]
        return float(scorer.probabilities([critic_text(rec["function_code"], tests)])[0, 0]) if tests.strip() else None

    for kept, one in zip(chosen, first):
        info, info_first = kept["metadata"]["generation"]["rerank"], one["metadata"]["generation"]["rerank"]
        assert info["candidates"] == 3 and info["side"] == "critic-reranked" and info_first["side"] == "first candidate"
        assert info["critic_p_good"] == info_first["critic_p_good"] and info_first["chosen"] == 0
        scores = info["critic_p_good"]
        assert p_good(one) == pytest.approx(scores[0]) if scores[0] is not None else not one["generated_tests"].strip()
        if any(s is not None for s in scores):
            assert p_good(kept) == pytest.approx(max(s for s in scores if s is not None))
            assert scores[info["chosen"]] == max(s for s in scores if s is not None)
    assert summary["candidates"] == 3 and summary["rerank"]["functions"] == 4
    assert summary["rerank"]["chose_first"] == sum(r["metadata"]["generation"]["rerank"]["chosen"] == 0 for r in chosen)
    assert summary["rerank"]["critic_seconds"] > 0  # the critic's scoring time is reported, apart from generation's
    # sampling at temperature 1.5 draws different candidates: the critic had a choice to make
    assert any(len({s for s in r["metadata"]["generation"]["rerank"]["critic_p_good"]}) > 1 for r in chosen)

"""Meta-evaluation: correlations on hand-checked cases, the gold-data readers and their errors."""

from __future__ import annotations

import math

import pytest

from ringbit.evaluator.metaeval import Segment, correlations, read_segments
from ringbit.evaluator.synthetic import make_examples, write_jsonl


def test_correlations_agree_disagree_and_a_hand_computed_tau():
    gold = [-10.0, -5.0, -1.0, 0.0]
    assert correlations([-9, -4, -2, 0], gold) == pytest.approx({"kendall_tau": 1.0, "pearson": 52 / (44.75 * 62) ** 0.5, "n": 4}, abs=1e-9)
    assert correlations([0, -2, -4, -9], gold)["kendall_tau"] == pytest.approx(-1.0)
    # pairs: (1,2)+ (1,3)+ (1,4)+ (2,3)- (2,4)+ (3,4)+ -> (5 - 1) / 6
    assert correlations([1, 3, 2, 4], [1, 2, 3, 4])["kendall_tau"] == pytest.approx(4 / 6)


def test_constant_predictions_have_no_correlation():
    out = correlations([0.0, 0.0, 0.0], [-1.0, -5.0, 0.0])
    assert math.isnan(out["kendall_tau"]) and math.isnan(out["pearson"]) and out["n"] == 3
    with pytest.raises(ValueError, match="2 predictions for 3"):
        correlations([0.0, 1.0], [0.0, 1.0, 2.0])


def test_human_tsv_and_synthetic_jsonl(tmp_path):
    tsv = tmp_path / "mqm.tsv"
    tsv.write_text("system\tsource\treference\tcandidate\tscore\n"
                   "sysA\t源\tThe cat.\tA cat.\t-1\nsysB\t\tThe dog.\tDog the.\t-6.5\n")
    segments = read_segments(tsv)
    assert segments[1] == Segment("The dog.", "Dog the.", -6.5, None, "zh-en", "sysB")
    assert segments[0].item() == {"reference": "The cat.", "candidate": "A cat.", "task": "zh-en", "source": "源"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("system\treference\tcandidate\tscore\nA\tx\ty\t0\n")
    with pytest.raises(ValueError, match="missing column.*source"):
        read_segments(bad)
    examples = make_examples(["The quick brown fox jumps over the lazy dog near the river bank."] * 3, 5)
    jsonl = write_jsonl(examples, tmp_path / "synth.jsonl")
    assert [s.gold for s in read_segments(jsonl)] == [e.score for e in examples]


def test_unparsed_reports_count_as_failures_not_as_perfect_scores():
    from ringbit.evaluator.metaeval import UNPARSED_SCORE, agreement

    gold = [-10.0, -5.0, -1.0, 0.0]
    results = [{"score": -10.0, "parsed": True}, {"score": None, "parsed": False},
               {"score": -1.0, "parsed": True}, {"score": 0.0, "parsed": True}]
    out = agreement(results, gold)
    assert UNPARSED_SCORE == -25.0
    assert out["parse_rate"] == 0.75 and out["n_parsed"] == 3 and out["n"] == 4
    # the unparsed segment ranks below -10: one discordant pair of six -> tau-b 4/6
    assert out["kendall_tau"] == pytest.approx(4 / 6)
    assert out["kendall_tau_parsed"] == pytest.approx(1.0)  # the three parsed ones agree exactly
    # had the empty report been scored 0 (the old behaviour), it would tie with the perfect one
    assert correlations([-10, 0, -1, 0], gold)["kendall_tau"] != out["kendall_tau"]

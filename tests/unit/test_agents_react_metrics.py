"""HotpotQA EM/F1 (hotpot_evaluate_v1 semantics), with values worked out by hand."""

from __future__ import annotations

import pytest

from ringbit.agents.react.metrics import aggregate, exact_match, f1, f1_score, normalize_answer


@pytest.mark.parametrize("raw,norm", [
    ("The Beatles", "beatles"),
    ("  A   tale of  an Apple ", "tale of apple"),
    ("U.S.A.!", "usa"),
    ("Anna and the Theatre", "anna and theatre"),   # articles only as whole words
    ("The-End", "theend"),                          # punctuation goes before articles do
    ("1,800 to 7,000 ft", "1800 to 7000 ft"),
])
def test_normalize(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_match():
    assert exact_match("the Beatles.", "Beatles") == 1.0
    assert exact_match("Beatles", "The Rolling Stones") == 0.0
    assert exact_match("Yes", "yes") == 1.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0


def test_f1_partial_by_hand():
    # pred "eiffel tower in paris" (4 tokens), gold "eiffel tower" (2): P=2/4, R=2/2 -> F1=2/3
    assert f1_score("The Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx((2 / 3, 0.5, 1.0))
    # pred {barack, obama}, gold {obama, barack, h}: P=1, R=2/3 -> F1=0.8
    assert f1("Barack Obama", "Obama, Barack H.") == pytest.approx(0.8)
    # repeated tokens count once per match: pred "new new york" vs gold "new york": P=2/3, R=1
    assert f1("new new york", "New York") == pytest.approx(0.8)
    assert f1("Chicago", "New York") == 0.0
    assert f1("", "New York") == 0.0
    assert f1("the", "a") == 0.0  # both normalise to nothing


def test_f1_yes_no_special_case():
    # Token overlap would give 2/3 here; the official scorer gives 0 for yes/no/noanswer mismatches.
    assert f1("yes", "yes indeed") == 0.0
    assert f1("no way", "no") == 0.0
    assert f1("Yes.", "yes") == 1.0
    assert f1("noanswer", "no answer") == 0.0
    assert f1_score("no", "yes") == (0.0, 0.0, 0.0)


def test_aggregate():
    out = aggregate([("Beatles", "The Beatles"), ("Barack Obama", "Obama, Barack H."),
                     ("yes", "no")])
    assert out["n"] == 3
    assert out["em"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx((1 + 0.8 + 0) / 3)
    assert aggregate([{"em": 1.0, "f1": 1.0}, {"em": 0.0, "f1": 0.5}]) == {"em": 0.5, "f1": 0.75,
                                                                          "n": 2}
    assert aggregate([]) == {"em": 0.0, "f1": 0.0, "n": 0}


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_questions():
    from ringbit.agents.react.metrics import bootstrap_ci

    few = [1.0] * 3 + [0.0] * 7  # EM 0.3 on 10 questions
    low, high = bootstrap_ci(few)
    assert 0.0 <= low < 0.3 < high <= 0.7
    assert bootstrap_ci(few) == (low, high)  # seeded: a table row reproduces
    many_low, many_high = bootstrap_ci(few * 20)  # the same rate on 200 questions
    assert many_high - many_low < (high - low) / 3  # ~1/sqrt(20) as wide
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)

"""Meta-evaluation: correlations on hand-checked cases, the gold-data readers and their errors."""

from __future__ import annotations

import math

import pytest

from ringbit.evaluator.metaeval import Segment, correlations, read_gold, read_segments
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
    # the WMT22 MQM development set's layout: a segment index, the gold in `mqm`, no source;
    # bare quote characters are text, not CSV quoting
    wmt = tmp_path / "dev.tsv"
    wmt.write_text('system\tsegment\treference\tcandidate\tmqm\n'
                   'Online-A\t0\t"Yes," he said.\tHe said "yes.\t-0.0\nM2M\t0\tNo.\tNo\t-1.5\n')
    assert read_segments(wmt) == [Segment('"Yes," he said.', 'He said "yes.', -0.0, None, "zh-en", "Online-A"),
                                  Segment("No.", "No", -1.5, None, "zh-en", "M2M")]
    for header, row, match in [("system\treference\tcandidate\n", "A\tx\ty\n", "missing column.*score"),
                               ("reference\tscore\n", "x\t0\n", "missing column.*candidate"),
                               ("reference\tcandidate\tmqm\n", "x\ty\tbad\n", r"bad.tsv:2: mqm 'bad' is not a number")]:
        bad = tmp_path / "bad.tsv"
        bad.write_text(header + row)
        with pytest.raises(ValueError, match=match):
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


def test_explanation_agreement_compares_reported_and_injected_error_spans(tmp_path):
    from ringbit.data.corpus import builtin_documents
    from ringbit.evaluator.metaeval import explanation_agreement, spans_overlap

    ref, cand = "The cat sat on the mat today.", "The dog sat on mat today."
    assert spans_overlap('"dog sat"', "dog", cand, ref)            # quotes stripped, characters shared
    assert not spans_overlap("today", "dog", cand, ref)
    assert spans_overlap("the mat", "the", cand, ref)              # an omission: found in the reference
    assert not spans_overlap("horse", "dog", cand, ref)            # a location in neither text
    segments = [Segment(ref, cand, -6.0, errors=[{"location": "dog"}, {"location": "the"}]),
                Segment(ref, ref, 0.0, errors=[]),                  # no error injected
                Segment(ref, cand, -6.0, errors=[{"location": "dog"}]),
                Segment(ref, cand, -5.0)]                           # human-score data: no spans
    results = [{"parsed": True, "score": -6.0, "errors": [{"location": "dog"}, {"location": "today"}]},
               {"parsed": True, "score": -1.0, "errors": [{"location": "cat"}]},   # a false alarm
               {"parsed": False, "score": None, "errors": [{"location": "dog"}]},  # unparsed: not counted
               {"parsed": True, "score": -5.0, "errors": [{"location": "dog"}]}]
    out = explanation_agreement(results, segments)
    assert (out["spans_reported"], out["spans_injected"]) == (3, 2)
    assert out["span_precision"] == pytest.approx(1 / 3) and out["span_recall"] == pytest.approx(1 / 2)
    assert math.isnan(explanation_agreement(results[3:], segments[3:])["span_precision"])
    # synthetic JSONL carries the injected errors; the gold report's own locations agree with them
    examples = make_examples(builtin_documents("builtin:python-topics"), 40, seed=3)
    read = read_segments(write_jsonl(examples, tmp_path / "s.jsonl"))
    assert [len(s.errors) for s in read] == [len(e.errors) for e in examples]
    gold_reports = [{"parsed": True, "score": e.score, "errors": [x.to_dict() for x in e.errors]} for e in examples]
    agree = explanation_agreement(gold_reports, read)
    assert agree["span_precision"] == agree["span_recall"] == 1.0


def test_per_system_correlations_and_the_string_baselines(tmp_path):
    from ringbit.evaluator.metaeval import agreement, run_meta_eval, string_metric_results

    gold = [0.0, -1.0, -5.0, 0.0, -1.0, -5.0]
    systems = ["A", "A", "A", "B", "B", "B"]
    results = [{"score": x} for x in (0.0, -1.0, -5.0, -5.0, -1.0, 0.0)]  # A ranks right, B backwards
    out = agreement(results, gold, systems)
    assert out["per_system"]["A"]["kendall_tau"] == pytest.approx(1.0)
    assert out["per_system"]["B"]["kendall_tau"] == pytest.approx(-1.0)
    assert "per_system" not in agreement(results, gold, ["A"] * 6)

    ref = "The committee approved the new budget on Tuesday."
    segments = [Segment(ref, ref, 0.0), Segment(ref, "The committee approved the budget on Tuesday.", -1.0),
                Segment(ref, "Budget committee new Tuesday the.", -5.0), Segment(ref, "Completely unrelated words here.", -25.0)]
    for metric in ("bleu", "chrf", "ter"):
        scores = [r["score"] for r in string_metric_results(segments, metric)]
        assert scores == sorted(scores, reverse=True), (metric, scores)  # higher = closer (TER negated)
    with pytest.raises(ValueError, match="unknown metric 'meteor'"):
        string_metric_results(segments, "meteor")

    # a whole run into a real MLflow store (sqlite): pooled + per-system metrics, plot, predictions
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    two = [Segment(s.reference, s.candidate, s.gold, system=name) for name in ("A", "B") for s in segments]
    result = run_meta_eval(two, "", tmp_path / "gold.tsv", metric="chrf", mlflow_uri=uri)
    run = MlflowClient(uri).get_run(result["mlflow_run"])
    assert run.info.status == "FINISHED" and run.data.params["metric"] == "chrf"
    assert run.data.metrics["kendall_tau.A"] == pytest.approx(result["per_system"]["A"]["kendall_tau"])
    assert result["kendall_tau"] > 0.9 and result["segments_per_s"] > 0


WMT22 = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "wmt22-zhen-mqm" / "dev.tsv"


@pytest.mark.skipif(not WMT22.is_file(), reason="WMT22 zh-en MQM set not found at ../shared/wmt22-zhen-mqm")
def test_sentence_bleu_on_wmt22_zhen_matches_the_independent_measurement():
    """The issue measured sentence BLEU's tau-b vs MQM on this set at 0.206 (sacrebleu, pooled):
    reading the file and correlating must reproduce it."""
    from ringbit.evaluator.metaeval import agreement, string_metric_results

    segments = read_segments(WMT22)
    assert len(segments) == 3750 and {s.system for s in segments} == {"Online-A", "M2M100_1.2B-B4"}
    out = agreement(string_metric_results(segments, "bleu"), [s.gold for s in segments],
                    [s.system for s in segments])
    assert out["kendall_tau"] == pytest.approx(0.206, abs=5e-4)


def test_a_sample_is_drawn_across_the_file_in_file_order_and_repeats_with_its_seed(tmp_path):
    """--sample draws from the whole file (a WMT file sorted by system keeps both systems, which
    --limit would not) and the same seed gives every metric the same segments."""
    tsv = tmp_path / "gold.tsv"
    rows = [f"{'A' if i < 50 else 'B'}\tref {i}\tcand {i}\t{-i}" for i in range(100)]
    tsv.write_text("system\treference\tcandidate\tmqm\n" + "\n".join(rows) + "\n")
    first = read_gold(tsv, sample=20, seed=7)
    again = read_gold(tsv, sample=20, seed=7)
    other = read_gold(tsv, sample=20, seed=8)
    assert len(first) == 20 and [s.reference for s in first] == [s.reference for s in again]
    assert [s.reference for s in first] != [s.reference for s in other]
    order = [int(s.reference.split()[1]) for s in first]
    assert order == sorted(order) and len(set(order)) == 20
    assert {s.system for s in first} == {"A", "B"}
    assert {s.system for s in read_gold(tsv, limit=20)} == {"A"}
    assert len(read_gold(tsv, sample=500)) == 100  # a sample larger than the file is the file

"""The InstructScore GenAI scorer inside a real `mlflow.genai.evaluate` (sqlite store) when it cannot
score: the row carries an error naming the cause, never a made-up score. Scoring through the served
evaluator is tested in tests/integration/test_evaluator_service.py."""

from __future__ import annotations

import mlflow
import pytest

from helpers import free_port
from ringbit.evaluator.genai_scorer import instructscore, rationale


def test_rows_that_cannot_be_scored_carry_the_reason(fluent_mlflow, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.set_experiment("genai").experiment_id
    rows = [{"inputs": {"q": "t"}, "outputs": "The cat sit.", "expectations": {"expected_response": "The cat sat."}},
            {"inputs": {"q": "t"}, "outputs": "No reference given.", "expectations": {"other": "x"}}]
    result = mlflow.genai.evaluate(data=rows, scorers=[instructscore(f"http://127.0.0.1:{free_port()}")])
    traces = mlflow.search_traces(run_id=result.run_id, locations=[experiment], return_type="list")
    errors = sorted(a.error.error_message for t in traces for a in t.info.assessments if a.name == "instructscore")
    assert len(errors) == 2
    assert errors[0].startswith("evaluator http://127.0.0.1:") and "unreachable" in errors[0]
    assert errors[1] == "no reference: give expectations.expected_response"


def test_rationale_lists_the_errors():
    errors = [{"severity": "major", "type": "Mistranslation", "location": "sit", "explanation": "tense"},
              {"severity": "minor", "type": "", "location": "the", "explanation": ""}]
    assert rationale(errors) == 'major: Mistranslation at "sit" (tense)\nminor: error at "the"'
    assert rationale([]) == "no error found"
    with pytest.raises(ValueError, match="task 'poetry'"):
        instructscore(task="poetry")

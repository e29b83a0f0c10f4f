"""InstructScore as an MLflow GenAI scorer: `mlflow.genai.evaluate(data, scorers=[instructscore(URL)])`
puts the served evaluator's score and error report next to a user's other judges.

Each row's output is the candidate and its `expectations["expected_response"]` (or
`expectations["reference"]`) the reference; `inputs["source"]` is passed for the tasks that need
one. The feedback value is the InstructScore score (−5 per major, −1 per minor error, in
[−25, 0]); its rationale lists the errors. A report that does not parse is an error on that row
(never a score of 0), and so is an evaluator that cannot be reached."""

from __future__ import annotations

from typing import Any

import requests
from mlflow.entities import AssessmentSource, Feedback
from mlflow.genai.scorers import scorer

from ringbit.evaluator.prompts import TASKS


def _text(value: Any) -> str:
    """The text of an output or expectation: a string, or the usual keys of a dict."""
    if isinstance(value, dict):
        for key in ("response", "expected_response", "reference", "text", "content", "output"):
            if isinstance(value.get(key), str):
                return value[key]
    return "" if value is None else str(value)


def rationale(errors: list[dict[str, Any]]) -> str:
    """The report's errors as lines a reader can scan in the MLflow UI."""
    if not errors:
        return "no error found"
    return "\n".join(f"{e['severity']}: {e['type'] or 'error'} at \"{e['location']}\""
                     + (f" ({e['explanation']})" if e.get("explanation") else "") for e in errors)


def instructscore(evaluator_url: str = "http://127.0.0.1:8000", task: str = "zh-en",
                  name: str = "instructscore", timeout_s: float = 300):
    """A GenAI scorer that asks the InstructScore evaluator at `evaluator_url` (POST /v1/evaluate)."""
    if task not in TASKS:
        raise ValueError(f"task {task!r}: choose one of {', '.join(TASKS)}")
    url = evaluator_url.rstrip("/")
    url = url if url.endswith("/v1/evaluate") else f"{url}/v1/evaluate"
    source = AssessmentSource(source_type="LLM_JUDGE", source_id=f"ringbit-instructscore:{url}")

    @scorer(name=name)
    def _instructscore(inputs: Any = None, outputs: Any = None, expectations: Any = None) -> Feedback:
        reference = _text((expectations or {}).get("expected_response") or (expectations or {}).get("reference"))
        candidate = _text(outputs)
        if not reference:
            return Feedback(name=name, error="no reference: give expectations.expected_response", source=source)
        item = {"reference": reference, "candidate": candidate or " ", "task": task}
        if isinstance(inputs, dict) and isinstance(inputs.get("source"), str):
            item["source"] = inputs["source"]
        try:
            r = requests.post(url, json=item, timeout=timeout_s)
        except requests.RequestException as exc:
            return Feedback(name=name, error=f"evaluator {url} unreachable: {exc}", source=source)
        if r.status_code != 200:
            return Feedback(name=name, error=f"evaluator {url} answered {r.status_code}: {r.text[:300]}",
                            source=source)
        out = r.json()
        if not out.get("parsed", out.get("score") is not None) or out.get("score") is None:
            return Feedback(name=name, error="the evaluator's report did not parse", source=source,
                            metadata={"raw": str(out.get("raw", ""))[:2000]})
        return Feedback(name=name, value=float(out["score"]), rationale=rationale(out.get("errors", [])),
                        source=source)

    return _instructscore

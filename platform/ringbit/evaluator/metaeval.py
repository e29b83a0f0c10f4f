"""Meta-evaluation: segment-level agreement between an evaluator's scores and gold scores
(Kendall tau-b and Pearson, pooled over systems as in WMT), with a scatter plot.

Gold data is either a JSONL file of synthetic examples (ringbit.evaluator.synthetic; gold = the
score of the injected errors) or a human-score TSV with a header row and the columns

    system <TAB> source <TAB> reference <TAB> candidate <TAB> score [<TAB> task]

(`score` e.g. MQM, higher = better; `source` may be empty; `task` defaults to zh-en).

A report that does not parse counts as a failure (`agreement`): it takes the worst score in the
correlations and lowers the logged parse rate.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringbit.evaluator.report import MAX_ERRORS, PENALTY

TSV_COLUMNS = ("system", "source", "reference", "candidate", "score")


@dataclass
class Segment:
    reference: str
    candidate: str
    gold: float
    source: str | None = None
    task: str = "zh-en"
    system: str = ""

    def item(self) -> dict[str, Any]:
        item = {"reference": self.reference, "candidate": self.candidate, "task": self.task}
        if self.source:
            item["source"] = self.source
        return item


def read_segments(path: str | Path, task: str = "zh-en") -> list[Segment]:
    """Segments from synthetic JSONL or a human-score TSV (format in the module docstring)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        segments = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                segments.append(Segment(row["reference"], row["candidate"], float(row["score"]),
                                        row.get("source"), row.get("task", task), row.get("system", "")))
            except KeyError as exc:
                raise ValueError(f"{path}:{n}: missing field {exc.args[0]!r}") from None
        return segments
    with path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in TSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                             f"{', '.join(TSV_COLUMNS)} [task], tab-separated")
        return [Segment(r["reference"], r["candidate"], float(r["score"]), r["source"] or None,
                        r.get("task") or task, r["system"]) for r in reader]


def correlations(predicted: list[float], gold: list[float]) -> dict[str, float]:
    """Kendall tau-b and Pearson r; NaN where either side is constant (no ranking to compare)."""
    from scipy.stats import kendalltau, pearsonr

    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold scores")
    n = len(gold)
    if n < 2 or len(set(predicted)) < 2 or len(set(gold)) < 2:
        return {"kendall_tau": math.nan, "pearson": math.nan, "n": n}
    return {"kendall_tau": float(kendalltau(predicted, gold, variant="b").statistic),
            "pearson": float(pearsonr(predicted, gold).statistic), "n": n}


# An unparsed report is a failure of the evaluator: it gets the worst score a report can give
# (MAX_ERRORS major errors), never 0, which would call the translation perfect.
UNPARSED_SCORE = MAX_ERRORS * PENALTY["major"]


def agreement(results: list[dict[str, Any]], gold: list[float]) -> dict[str, float]:
    """Correlations over every segment (an unparsed report scored UNPARSED_SCORE), the parse rate
    (well-formed reports), and the correlations over the parsed segments only (`*_parsed`)."""
    parsed = [r.get("parsed", True) and r.get("score") is not None for r in results]
    predicted = [float(r["score"]) if ok else UNPARSED_SCORE for r, ok in zip(results, parsed)]
    stats = correlations(predicted, gold)
    subset = correlations([p for p, ok in zip(predicted, parsed) if ok], [g for g, ok in zip(gold, parsed) if ok])
    return {**stats, "parse_rate": sum(parsed) / max(1, len(parsed)),
            "kendall_tau_parsed": subset["kendall_tau"], "pearson_parsed": subset["pearson"],
            "n_parsed": sum(parsed)}


def scatter_plot(predicted: list[float], gold: list[float], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(gold, predicted, s=12, alpha=0.6)
    ax.set_xlabel("gold score")
    ax.set_ylabel("predicted score")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def score_segments(segments: list[Segment], evaluator_url: str, batch: int = 8,
                   timeout_s: float = 600, progress=None) -> list[dict[str, Any]]:
    """The evaluator's result for every segment, `batch` items per POST /v1/evaluate."""
    import requests

    url = evaluator_url.rstrip("/")
    url = url if url.endswith("/v1/evaluate") else f"{url}/v1/evaluate"
    results: list[dict[str, Any]] = []
    for start in range(0, len(segments), batch):
        chunk = [s.item() for s in segments[start:start + batch]]
        r = requests.post(url, json={"items": chunk}, timeout=timeout_s)
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:500]}")
        body = r.json()
        results.extend(body["results"] if "results" in body else [body])
        if progress:
            progress(len(chunk))
    return results


class ScoringError(RuntimeError):
    """The evaluator service could not score the segments (unreachable, an error answer)."""


def read_gold(path: str | Path, limit: int | None = None) -> list[Segment]:
    """The first `limit` gold segments of `path`; ValueError if it is missing, malformed or holds
    fewer than 2 (no correlation to compute)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError("no such file")
    try:
        segments = read_segments(path)[:limit]
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments, found {len(segments)}")
    return segments


def run_meta_eval(segments: list[Segment], evaluator_url: str, data: str | Path, batch: int = 8,
                  experiment: str = "ringbit-evaluator", mlflow_uri: str | None = None,
                  progress=None) -> dict[str, Any]:
    """Score `segments` with the evaluator service, correlate with their gold scores and log one
    MLflow run (params, kendall_tau / pearson, a scatter plot, the predictions): returns the
    correlations (kendall_tau, pearson, n) and the run id as `mlflow_run`."""
    import tempfile

    from mlflow.tracking import MlflowClient

    from ringbit import tracking

    data = Path(data)
    try:
        results = score_segments(segments, evaluator_url, batch=max(1, batch), progress=progress)
    except Exception as exc:
        raise ScoringError(str(exc)) from exc
    gold = [s.gold for s in segments]
    stats = agreement(results, gold)
    predicted = [UNPARSED_SCORE if r.get("score") is None else r["score"] for r in results]
    uri = tracking.resolve_tracking_uri(mlflow_uri)
    client = MlflowClient(uri)
    run = client.create_run(tracking.experiment_id(client, experiment), run_name=f"meta-eval-{data.stem}",
                            tags=tracking.default_tags())
    rid = run.info.run_id
    tracking.log_params(client, rid, {"data": str(data), "evaluator_url": evaluator_url, "segments": len(segments)})
    for key in ("kendall_tau", "pearson", "parse_rate", "kendall_tau_parsed", "pearson_parsed"):
        client.log_metric(rid, key, stats[key])
    with tempfile.TemporaryDirectory() as tmp:
        png = scatter_plot(predicted, gold, Path(tmp) / "scatter.png",
                           f"tau {stats['kendall_tau']:.3f}  r {stats['pearson']:.3f}  (n={len(gold)}, "
                           f"parsed {stats['parse_rate']:.0%}; unparsed at {UNPARSED_SCORE:g})")
        preds = Path(tmp) / "predictions.jsonl"
        preds.write_text("".join(json.dumps({**s.item(), "gold": s.gold, **r}) + "\n"
                                 for s, r in zip(segments, results)))
        client.log_artifact(rid, str(png))
        client.log_artifact(rid, str(preds))
    client.set_terminated(rid)
    return {**stats, "mlflow_run": rid}

"""Meta-evaluation: segment-level agreement between an evaluator's scores and gold scores
(Kendall tau-b and Pearson, pooled over systems as in WMT), with a scatter plot.

Gold data is either a JSONL file of synthetic examples (ringbit.evaluator.synthetic; gold = the
score of the injected errors) or a human-score TSV with a header row naming its columns:

    [system] [source] reference candidate score|mqm [task]   (any order, other columns ignored)

(`score` / `mqm` e.g. MQM, higher = better; `source` may be empty; `task` defaults to zh-en). That
reads both ringbit's layout (system, source, reference, candidate, score) and the WMT22 MQM
development set's (system, segment, reference, candidate, mqm).

Besides the served evaluator, the string metrics a learned metric must beat are computed here with
sacrebleu (sentence BLEU, chrF, and -TER so that higher is better), on the same segments.

A report that does not parse counts as a failure (`agreement`): it takes the worst score in the
correlations and lowers the logged parse rate.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringbit.evaluator.report import MAX_ERRORS, PENALTY

TSV_COLUMNS = ("system", "source", "reference", "candidate", "score")
GOLD_COLUMNS = ("score", "mqm")
STRING_METRICS = ("bleu", "chrf", "ter")


@dataclass
class Segment:
    reference: str
    candidate: str
    gold: float
    source: str | None = None
    task: str = "zh-en"
    system: str = ""
    errors: list[dict[str, Any]] | None = field(default=None, compare=False)  # synthetic: the injected ones

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
                                        row.get("source"), row.get("task", task), row.get("system", ""),
                                        row.get("errors") if isinstance(row.get("errors"), list) else None))
            except KeyError as exc:
                raise ValueError(f"{path}:{n}: missing field {exc.args[0]!r}") from None
        return segments
    # QUOTE_NONE: WMT text holds bare quote characters that are not CSV quoting
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        gold = next((c for c in GOLD_COLUMNS if c in columns), None)
        missing = [c for c in ("reference", "candidate") if c not in columns] + ([] if gold else ["score"])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                             "reference, candidate and score (or mqm), optionally system, source and "
                             "task, tab-separated")
        segments = []
        for n, r in enumerate(reader, 2):
            try:
                value = float(r[gold])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{n}: {gold} {r[gold]!r} is not a number") from None
            segments.append(Segment(r["reference"], r["candidate"], value, r.get("source") or None,
                                    r.get("task") or task, r.get("system") or ""))
        return segments


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


def predictions(results: list[dict[str, Any]]) -> tuple[list[float], list[bool]]:
    """(score per segment, whether its report parsed): an unparsed one scores UNPARSED_SCORE."""
    parsed = [r.get("parsed", True) and r.get("score") is not None for r in results]
    return [float(r["score"]) if ok else UNPARSED_SCORE for r, ok in zip(results, parsed)], parsed


def agreement(results: list[dict[str, Any]], gold: list[float],
              systems: list[str] | None = None) -> dict[str, Any]:
    """Correlations over every segment (an unparsed report scored UNPARSED_SCORE), the parse rate
    (well-formed reports), the correlations over the parsed segments only (`*_parsed`) and, with
    more than one system, each system's own (`per_system`: WMT pools systems for the headline)."""
    predicted, parsed = predictions(results)
    stats = correlations(predicted, gold)
    subset = correlations([p for p, ok in zip(predicted, parsed) if ok], [g for g, ok in zip(gold, parsed) if ok])
    out = {**stats, "parse_rate": sum(parsed) / max(1, len(parsed)),
           "kendall_tau_parsed": subset["kendall_tau"], "pearson_parsed": subset["pearson"],
           "n_parsed": sum(parsed)}
    names = sorted(set(systems or []))
    if len(names) > 1:
        out["per_system"] = {
            name: correlations([p for p, s in zip(predicted, systems) if s == name],
                               [g for g, s in zip(gold, systems) if s == name]) for name in names}
    return out


def _span(text: str, piece: str) -> tuple[int, int] | None:
    piece = piece.strip().strip('"').strip()
    at = text.find(piece) if piece else -1
    return (at, at + len(piece)) if at >= 0 else None


def spans_overlap(predicted: str, injected: str, candidate: str, reference: str) -> bool:
    """Whether a reported error location and an injected one cover common characters of the
    candidate (or, for an omission, whose words are only in the reference, of the reference)."""
    for text in (candidate, reference):
        a, b = _span(text, predicted), _span(text, injected)
        if a and b and a[0] < b[1] and b[0] < a[1]:
            return True
    return False


def explanation_agreement(results: list[dict[str, Any]], segments: list["Segment"]) -> dict[str, float]:
    """Explanation agreement on synthetic data (the issue's check; InstructScore, arXiv 2305.14282,
    judges its explanations' precision with GPT-4 instead): over segments with a parsed report and known
    injected errors, `span_precision` is the share of reported errors whose location overlaps an
    injected error's, `span_recall` the share of injected errors some reported location overlaps.
    NaN when no segment carries injected errors (human-score data)."""
    hits_p = n_p = hits_r = n_r = 0
    for seg, r in zip(segments, results):
        if seg.errors is None or not (r.get("parsed", True) and r.get("score") is not None):
            continue
        predicted = [str(e.get("location") or "") for e in r.get("errors") or []]
        injected = [str(e.get("location") or "") for e in seg.errors]

        def overlap(a: str, b: str) -> bool:
            return spans_overlap(a, b, seg.candidate, seg.reference)

        n_p += len(predicted)
        hits_p += sum(any(overlap(p, g) for g in injected) for p in predicted)
        n_r += len(injected)
        hits_r += sum(any(overlap(p, g) for p in predicted) for g in injected)
    return {"span_precision": hits_p / n_p if n_p else math.nan,
            "span_recall": hits_r / n_r if n_r else math.nan,
            "spans_reported": n_p, "spans_injected": n_r}


def string_metric_results(segments: list[Segment], metric: str, progress=None) -> list[dict[str, Any]]:
    """Sentence-level sacrebleu scores in the evaluator's result shape (higher = better: TER is
    negated). BLEU uses exponential smoothing (sacrebleu's sentence default)."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    if metric not in STRING_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose evaluator or one of {', '.join(STRING_METRICS)}")
    scorer = {"bleu": lambda: BLEU(effective_order=True), "chrf": CHRF, "ter": TER}[metric]()
    sign = -1.0 if metric == "ter" else 1.0
    results = []
    for s in segments:
        results.append({"score": sign * scorer.sentence_score(s.candidate, [s.reference]).score, "parsed": True})
        if progress:
            progress(1)
    return results


def scatter_plot(predicted: list[float], gold: list[float], path: Path, title: str,
                 systems: list[str] | None = None) -> Path:
    """Predicted vs gold, one colour per system (unparsed reports sit at UNPARSED_SCORE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = systems or [""] * len(gold)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name in sorted(set(systems)):
        pick = [i for i, s in enumerate(systems) if s == name]
        ax.scatter([gold[i] for i in pick], [predicted[i] for i in pick], s=12, alpha=0.5,
                   label=name or None)
    if len(set(systems)) > 1:
        ax.legend(fontsize=8)
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


def read_gold(path: str | Path, limit: int | None = None, sample: int | None = None,
              seed: int = 0) -> list[Segment]:
    """The first `limit` gold segments of `path`, or `sample` of them drawn at random with `seed`
    (kept in file order; the same seed draws the same segments for every metric, from the whole
    file rather than its first system); ValueError if it is missing, malformed or holds
    fewer than 2 (no correlation to compute)."""
    import random

    path = Path(path)
    if not path.is_file():
        raise ValueError("no such file")
    try:
        segments = read_segments(path)[:limit]
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if sample is not None and sample < len(segments):
        keep = sorted(random.Random(seed).sample(range(len(segments)), sample))
        segments = [segments[i] for i in keep]
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments, found {len(segments)}")
    return segments


def run_meta_eval(segments: list[Segment], evaluator_url: str, data: str | Path, batch: int = 8,
                  experiment: str = "ringbit-evaluator", mlflow_uri: str | None = None,
                  progress=None, metric: str = "evaluator",
                  selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score `segments` with the evaluator service (or a string metric: bleu, chrf, ter),
    correlate with their gold scores and log one MLflow run (params, kendall_tau / pearson pooled
    and per system, parse rate, segments/s, a scatter plot, the predictions): returns the
    statistics (`agreement`), `segments_per_s` and the run id as `mlflow_run`. `selection`: how
    the segments were chosen from `data` (limit, sample, seed), logged as params."""
    import tempfile
    import time

    from mlflow.tracking import MlflowClient

    from ringbit import tracking

    data = Path(data)
    if metric != "evaluator" and metric not in STRING_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose evaluator or one of {', '.join(STRING_METRICS)}")
    began = time.perf_counter()
    try:
        if metric == "evaluator":
            results = score_segments(segments, evaluator_url, batch=max(1, batch), progress=progress)
        else:
            results = string_metric_results(segments, metric, progress)
    except Exception as exc:
        raise ScoringError(str(exc)) from exc
    seconds = time.perf_counter() - began
    gold = [s.gold for s in segments]
    stats = {**agreement(results, gold, [s.system for s in segments]),
             "segments_per_s": len(segments) / max(seconds, 1e-9), "metric": metric}
    if metric == "evaluator" and any(s.errors is not None for s in segments):
        stats.update(explanation_agreement(results, segments))
    predicted = predictions(results)[0]
    uri = tracking.resolve_tracking_uri(mlflow_uri)
    client = MlflowClient(uri)
    run = client.create_run(tracking.experiment_id(client, experiment), run_name=f"meta-eval-{metric}-{data.stem}",
                            tags=tracking.default_tags())
    rid = run.info.run_id
    try:
        tracking.log_params(client, rid, {"data": str(data), "metric": metric, "segments": len(segments),
                                          "evaluator_url": evaluator_url if metric == "evaluator" else "",
                                          **(selection or {})})
        for key in ("kendall_tau", "pearson", "parse_rate", "kendall_tau_parsed", "pearson_parsed",
                    "segments_per_s", "span_precision", "span_recall"):
            if key in stats:
                client.log_metric(rid, key, stats[key])
        for system, sub in stats.get("per_system", {}).items():
            for key in ("kendall_tau", "pearson"):
                client.log_metric(rid, f"{key}.{system}", sub[key])
        with tempfile.TemporaryDirectory() as tmp:
            png = scatter_plot(predicted, gold, Path(tmp) / "scatter.png",
                               f"{metric}: tau {stats['kendall_tau']:.3f}  r {stats['pearson']:.3f}  "
                               f"(n={len(gold)}, parsed {stats['parse_rate']:.0%})",
                               [s.system for s in segments])
            preds = Path(tmp) / "predictions.jsonl"
            preds.write_text("".join(json.dumps({**s.item(), "system": s.system, "gold": s.gold, **r}) + "\n"
                                     for s, r in zip(segments, results)))
            client.log_artifact(rid, str(png))
            client.log_artifact(rid, str(preds))
    except BaseException:
        tracking.mark_failed(client, rid)
        raise
    client.set_terminated(rid)
    return {**stats, "mlflow_run": rid}

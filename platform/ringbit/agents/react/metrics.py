"""HotpotQA answer scoring with the official hotpot_evaluate_v1 semantics (which FireAct uses):
normalise (lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace), then
exact match and token F1, where a yes/no/noanswer answer scores F1 0 unless it matches exactly."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["aggregate", "exact_match", "f1", "f1_score", "normalize_answer"]

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = ("yes", "no", "noanswer")

Gold = str | Sequence[str]


def normalize_answer(s: str) -> str:
    """lower -> remove punctuation -> remove articles -> collapse whitespace (official order)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def f1_score(prediction: str, gold: str) -> tuple[float, float, float]:
    """(f1, precision, recall) over normalised tokens, as in hotpot_evaluate_v1."""
    pred, truth = normalize_answer(prediction), normalize_answer(gold)
    # Yes/no questions have no partial credit: "yes" vs "no" shares no useful token overlap.
    if (pred in _SPECIAL or truth in _SPECIAL) and pred != truth:
        return 0.0, 0.0, 0.0
    pred_toks, truth_toks = pred.split(), truth.split()
    same = sum((Counter(pred_toks) & Counter(truth_toks)).values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision, recall = same / len(pred_toks), same / len(truth_toks)
    return 2 * precision * recall / (precision + recall), precision, recall


def _golds(gold: Gold) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


def exact_match(prediction: str, gold: Gold) -> float:
    """1.0 when the normalised strings are equal (to any gold, when several are given)."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in _golds(gold)))


def f1(prediction: str, gold: Gold) -> float:
    """Token F1 (the best over golds, when several are given)."""
    return max((f1_score(prediction, g)[0] for g in _golds(gold)), default=0.0)


def aggregate(items: Iterable[Mapping[str, Any] | tuple[str, Gold]]) -> dict[str, float | int]:
    """Mean EM and F1 over `items`: (prediction, gold) pairs or rows holding "em" and "f1"."""
    ems: list[float] = []
    f1s: list[float] = []
    for item in items:
        if isinstance(item, Mapping):
            ems.append(float(item["em"]))
            f1s.append(float(item["f1"]))
        else:
            pred, gold = item
            ems.append(exact_match(pred, gold))
            f1s.append(f1(pred, gold))
    n = len(ems)
    return {"em": sum(ems) / n if n else 0.0, "f1": sum(f1s) / n if n else 0.0, "n": n}


def bootstrap_ci(values: Sequence[float], level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (EM or F1 per question): the spread a
    table row would show over other draws of the same number of questions."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))

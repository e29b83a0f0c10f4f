"""Fine-tuning MemWalker's reader (`ringbit submit finetune-memwalker`): the teacher's traces
(memwalker_teacher.py: the agent's own summary, navigation and leaf prompts answered from the
generator's ground truth) through the shared SFT job (prompt tokens masked, Ray Train + DeepSpeed,
val_ppl on held-out documents in MLflow, the model registered as `memwalker-reader`)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from ringbit.agents.memwalker_config import MemWalkerFinetuneConfig
from ringbit.train.sft import Pairs, run_sft


def memwalker_pairs(cfg: MemWalkerFinetuneConfig, log=print) -> tuple[Pairs, Pairs]:
    """(train, val) pairs split by whole documents: no held-out tree was trained on."""
    from ringbit.agents.memwalker_teacher import make_traces

    d = cfg.data
    rows = [r for r in make_traces(d.n_docs, d.n_words, d.seed, distractors=d.distractors,
                                   fillers=tuple(d.fillers), segment_words=d.segment_words, fanout=d.fanout,
                                   wrong_rate=d.wrong_rate, empty_summary_keep=d.empty_summary_keep)
            if r["kind"] in d.kinds]
    docs = sorted({r["doc"] for r in rows})
    random.Random(d.seed).shuffle(docs)
    held = set(docs[:max(1, round(len(docs) * d.val_fraction))])
    counts = Counter(r["kind"] for r in rows)
    log(f"[ringbit] teacher traces: {len(rows)} examples from {len(docs)} documents "
        f"({', '.join(f'{counts[k]} {k}' for k in d.kinds)}); {len(held)} documents held out")
    return ([(r["prompt"], r["completion"]) for r in rows if r["doc"] not in held],
            [(r["prompt"], r["completion"]) for r in rows if r["doc"] in held])


def run_memwalker_finetune(cfg: MemWalkerFinetuneConfig, log=print) -> dict[str, Any]:
    return run_sft(cfg, "memwalker", lambda: memwalker_pairs(cfg, log),
                   "read long documents as MemWalker (summaries, navigation, answers)", log=log)

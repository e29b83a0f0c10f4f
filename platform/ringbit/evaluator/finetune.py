"""Fine-tune a platform LM to write InstructScore reports from synthetic examples (the shared
SFT job in ringbit.train.sft: prompt tokens masked, Ray Train + DeepSpeed, val_ppl in MLflow)."""

from __future__ import annotations

from typing import Any

from ringbit.evaluator.config import FinetuneConfig
from ringbit.train.sft import IGNORE, Pairs, run_sft, to_tensors, tokenize_pairs

__all__ = ["IGNORE", "instructscore_pairs", "run_finetune", "to_tensors", "tokenize_examples"]


def instructscore_pairs(examples, task: str) -> Pairs:
    """(InstructScore prompt, "\n" + report): the evaluator sends the prompt alone."""
    from ringbit.evaluator.prompts import build_prompt

    return [(build_prompt(task, ex.reference, ex.candidate), "\n" + ex.report) for ex in examples]


def tokenize_examples(examples, tokenizer, task: str, max_seq_len: int) -> list[tuple[list[int], int]]:
    return tokenize_pairs(instructscore_pairs(examples, task), tokenizer, max_seq_len)


def run_finetune(cfg: FinetuneConfig, log=print) -> dict[str, Any]:
    from pathlib import Path

    from ringbit.data.corpus import BUILTINS, builtin_documents
    from ringbit.evaluator.synthetic import make_examples

    def make_pairs() -> tuple[Pairs, Pairs]:
        c = cfg.data.corpus
        texts = builtin_documents(c) if c in BUILTINS else [Path(c).read_text(errors="replace")]
        examples = make_examples(texts, cfg.data.n_train + cfg.data.n_val, seed=cfg.data.seed)
        pairs = instructscore_pairs(examples, cfg.data.task)
        return pairs[cfg.data.n_val :], pairs[: cfg.data.n_val]

    return run_sft(cfg, "instructscore", make_pairs, "write InstructScore reports", log=log)

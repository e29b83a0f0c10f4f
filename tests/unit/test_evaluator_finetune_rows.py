"""The evaluator fine-tuning rows: only the report tokens (and EOS) are learned, the prompt is
masked, and too-long examples are dropped. Pure tokenizers/PyTorch, no job.

Moved from tests/integration/test_evaluator_finetune.py (the fine-tuning job stays there)."""

from __future__ import annotations

from ringbit.evaluator.finetune import IGNORE, to_tensors, tokenize_examples


def test_only_report_tokens_are_learned(base_model):
    from tokenizers import Tokenizer

    from ringbit.evaluator.synthetic import make_examples

    tok = Tokenizer.from_file(str(base_model / "tokenizer.json"))
    examples = make_examples(["The quick brown fox jumps over the lazy dog near the old river bank."] * 2, 3)
    rows = tokenize_examples(examples, tok, "zh-en", 1024)
    ids, labels = to_tensors(rows, pad=0)
    for i, (row, n_prompt) in enumerate(rows):
        learned = labels[i][labels[i] != IGNORE].tolist()
        assert learned == row[n_prompt:]  # the report (and EOS), nothing of the prompt
        assert (labels[i, : n_prompt - 1] == IGNORE).all()
    assert tokenize_examples(examples, tok, "zh-en", 16) == []  # too long: dropped

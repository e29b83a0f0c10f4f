"""The evaluator fine-tuning rows: only the report tokens (and EOS) are learned, the prompt is
masked, and too-long examples are dropped. Pure tokenizers/PyTorch, no job.

Moved from tests/integration/test_evaluator_finetune.py (the fine-tuning job stays there)."""

from __future__ import annotations

import pytest
import torch

from ringbit.models.config import ModelConfig
from ringbit.evaluator.finetune import IGNORE, to_tensors, tokenize_examples

CFG = ModelConfig(vocab_size=2048, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), CFG.vocab_size)
    return save_model_dir(tmp_path_factory.mktemp("base"), CFG, Transformer(CFG).state_dict(), tok.to_str())


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

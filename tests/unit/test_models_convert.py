"""Imported Llama-architecture weights run exactly in the ringbit Transformer: logits, greedy
generation, tokenizer, chat template and perplexity against transformers on the same weights.

The tiny models are written here (Hugging Face folder + GGUF), so CI needs no download. The real
SmolLM2-135M-Instruct (135M parameters, minutes of CPU) is in
tests/integration/test_models_convert_smollm2.py."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ringbit
from ringbit.models.convert import (
    ModelImportError, halve_rope_rows, interleave_rope_rows, read_gguf, read_hf_folder, read_source,
    write_imported,
)
from ringbit.models.io import load_model_dir, read_tokenizer_config, render_chat, stop_token_ids
from tiny_llama import PROMPTS, TEXT, write_gguf_from_hf, write_hf_llama
from tiny_llama import assert_parity as _assert_parity, transformers_reference as _reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(HF folder, GGUF file, ringbit folder from HF, ringbit folder from GGUF)."""
    root = tmp_path_factory.mktemp("tiny-llama")
    hf = write_hf_llama(root / "hf")
    gguf_file = write_gguf_from_hf(hf, root / "tiny.gguf")
    return hf, gguf_file, write_imported(read_source(hf), root / "from-hf"), \
        write_imported(read_source(gguf_file), root / "from-gguf")


def test_rope_row_permutation_round_trips():
    w = torch.randn(4 * 16, 8)
    assert torch.equal(halve_rope_rows(interleave_rope_rows(w, 4), 4), w)
    # per head, interleaved row 2i is rotate-half row i and row 2i + 1 is row i + d/2
    out = interleave_rope_rows(w, 4)
    assert torch.equal(out[2], w[1]) and torch.equal(out[3], w[1 + 8]) and torch.equal(out[16 + 1], w[16 + 8])


def test_hf_folder_runs_exactly(tiny):
    hf, _, from_hf, _ = tiny
    _assert_parity(from_hf, hf)


def test_gguf_runs_exactly_as_transformers_reads_it(tiny):
    _, gguf_file, _, from_gguf = tiny
    _assert_parity(from_gguf, gguf_file)  # Q8_0 token embedding dequantized by both sides


def test_import_keeps_config_chat_template_and_special_tokens(tiny):
    hf, gguf_file, from_hf, from_gguf = tiny
    for folder in (from_hf, from_gguf):
        meta = json.loads((folder / "config.json").read_text())["model"]
        assert (meta["vocab_size"], meta["n_layers"], meta["n_heads"], meta["n_kv_heads"]) == (384, 2, 4, 2)
        assert (meta["rope_theta"], meta["max_seq_len"], meta["tie_embeddings"]) == (100000.0, 256, False)
        tok_cfg = read_tokenizer_config(folder)
        assert tok_cfg["eos_token"] == "<|im_end|>"
        _, tok = load_model_dir(folder)
        assert stop_token_ids(tok, tok_cfg) == {tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")}
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
        from transformers import AutoTokenizer

        expected = AutoTokenizer.from_pretrained(hf).apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)
        assert render_chat(tok_cfg, messages) == expected
        # the folder's tokenizer files load in transformers too
        assert AutoTokenizer.from_pretrained(folder).eos_token == "<|im_end|>"


def test_tied_embeddings_import(tmp_path):
    hf = write_hf_llama(tmp_path / "hf", tie=True)
    imported = read_hf_folder(hf)
    assert imported.config.tie_embeddings and "lm_head.weight" not in imported.state_dict
    folder = write_imported(imported, tmp_path / "out")
    model, _ = load_model_dir(folder)
    assert model.lm_head.weight is model.embed.weight
    _assert_parity(folder, hf, new_tokens=8)


def test_unsupported_and_broken_sources_name_the_problem(tmp_path, tiny):
    import gguf

    hf, gguf_file, _, _ = tiny
    other = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    other.add_block_count(1)
    other.write_header_to_file(), other.write_kv_data_to_file(), other.write_tensors_to_file(), other.close()
    with pytest.raises(ModelImportError, match="architecture 'gpt2' is not supported"):
        read_gguf(tmp_path / "gpt2.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_file.read_bytes()[: gguf_file.stat().st_size // 2])
    with pytest.raises(ModelImportError, match="cut.gguf"):
        read_gguf(cut)
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for f in hf.iterdir():
        if f.name != "tokenizer.json":
            (no_tok / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelImportError, match="no tokenizer.json"):
        read_hf_folder(no_tok)
    with pytest.raises(ModelImportError, match="no such file"):
        read_source(tmp_path / "missing.gguf")


def test_eval_ppl_agrees_with_transformers_loss(tiny, tmp_path):
    """`ringbit eval-ppl` (sliding windows) vs transformers' own loss on the same windows."""
    hf, _, from_hf, _ = tiny
    text = tmp_path / "text.txt"
    text.write_text(TEXT[:3000])
    context, stride = 64, 48
    out = ringbit("eval-ppl", "--model", str(from_hf), "--data", str(text), "--context", str(context),
                  "--stride", str(stride), "--json", timeout=300, check=True)
    ours = json.loads(out.stdout.strip().splitlines()[-1])
    ref, ref_tok = _reference(hf)
    ids = torch.tensor(ref_tok(text.read_text(), add_special_tokens=False)["input_ids"])
    total, count, scored_to = 0.0, 0, 1
    with torch.no_grad():
        for begin in range(0, len(ids) - 1, stride):
            end = min(begin + context, len(ids) - 1)
            window = ids[begin:end + 1][None]
            first_new = scored_to - (begin + 1)
            labels = window.clone()
            labels[0, : first_new + 1] = -100  # transformers shifts: label t+1 is predicted at t
            n = int((labels[0, 1:] != -100).sum())
            if n:
                total += ref(window, labels=labels).loss.item() * n
                count, scored_to = count + n, end + 1
            if end + 1 >= len(ids):
                break
    assert ours["tokens"] == count
    assert abs(ours["log_ppl"] - total / count) / (total / count) < 1e-3


def test_imported_model_takes_bitlinear_lora_and_packed_export(tiny, tmp_path):
    """The seams apply to an imported model: its weights load into BitLinear projections, LoRA
    wraps it (equal to the base at init), and the packed export of the BitNet model answers like
    the BitLinear model and keeps the chat template."""
    from ringbit.quant.config import QuantConfig
    from ringbit.models.io import read_model_meta, save_model_dir
    from ringbit.models.lora import apply_lora
    from ringbit.models.transformer import Transformer
    from ringbit.quant.export import export_packed

    _, _, from_hf, _ = tiny
    model, tok = load_model_dir(from_hf)
    cfg, _, _ = read_model_meta(from_hf)
    ids = torch.tensor([tok.encode(PROMPTS[1]).ids])
    with torch.no_grad():
        base = model(ids)
        quant = QuantConfig(weight_bits=1.58, subln="none")
        bitnet = Transformer(cfg, quant=quant).eval()
        bitnet.load_state_dict(model.state_dict())  # BitLinear keeps nn.Linear's parameter names
        ternary = bitnet(ids)
        apply_lora(model, 4, 8.0)
        assert torch.allclose(model(ids), base, atol=1e-6)  # B = 0 at init
    assert not torch.allclose(ternary, base, atol=1e-3)  # quantization changed the function
    src = save_model_dir(tmp_path / "b158", cfg, bitnet.state_dict(), (from_hf / "tokenizer.json").read_text(),
                         quant=quant, tokenizer_config=read_tokenizer_config(from_hf))
    export_packed(src, tmp_path / "packed")
    packed, _ = load_model_dir(tmp_path / "packed")
    with torch.no_grad():
        assert torch.allclose(packed(ids), ternary, atol=1e-4)
    assert read_tokenizer_config(tmp_path / "packed")["chat_template"] == read_tokenizer_config(from_hf)["chat_template"]

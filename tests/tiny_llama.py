"""A tiny random Llama-architecture model written the way other tools write them: a Hugging Face
folder (transformers' save_pretrained + a fast tokenizer with a ChatML template) and the same
weights as a GGUF file (the `gguf` package's writer, q/k rows permuted as llama.cpp's converter
does). Parity tests compare ringbit's import of both against transformers' LlamaForCausalLM
(assert_parity, shared by tests/unit/test_models_convert.py and the SmolLM2 integration test)."""

from __future__ import annotations

import json
from pathlib import Path

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXT = ("The quick brown fox jumps over the lazy dog. Ring attention passes key and value blocks "
        "around a ring of devices while computing. BitNet uses ternary weights and 8-bit activations. "
        "Numbers like 12345 and 2024 are split into digits by some tokenizers.\n") * 20


def tiny_tokenizer(vocab_size: int = 384):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer=trainer)
    return tok


def write_hf_llama(out: Path, seed: int = 0, tie: bool = False) -> Path:
    """A random 2-layer GQA Llama (rope_theta 100000 like SmolLM2) saved as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rope_theta=100000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norm weights too, so a wrong norm mapping cannot hide
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.08)
    model.save_pretrained(out, safe_serialization=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny test llama\n")
    return out


def write_gguf_from_hf(hf_dir: Path, out: Path, q8_embedding: bool = True) -> Path:
    """The HF folder's weights and tokenizer as a llama GGUF file (F32, token embedding Q8_0)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((hf_dir / "config.json").read_text())
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    template = (hf_dir / "chat_template.jinja").read_text()
    weights = load_file(str(hf_dir / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def permute(w: np.ndarray, heads: int) -> np.ndarray:  # HF rotate-half -> interleaved
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("tiny-llama")
    w.add_license("apache-2.0")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base((cfg.get("rope_parameters") or cfg)["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    w.add_vocab_size(cfg["vocab_size"])
    vocab = tok["model"]["vocab"]
    for added in tok["added_tokens"]:
        vocab[added["content"]] = added["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|im_start|>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_pad_token_id(vocab["<|im_end|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(template)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    block = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for key, value in weights.items():
        value = value.astype(np.float32)
        if key in names:
            name = names[key]
        else:
            layer, _, rest = key[len("model.layers."):].partition(".")
            name = f"blk.{layer}.{block[rest[:-len('.weight')]]}.weight"
        if key.endswith("q_proj.weight"):
            value = permute(value, n_head)
        elif key.endswith("k_proj.weight"):
            value = permute(value, n_kv)
        if name == "token_embd.weight" and q8_embedding:
            w.add_tensor(name, gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


# ---------------------------------------------------------------- parity against transformers

PROMPTS = ["The quick brown fox", "Ring attention passes key and value blocks around",
           "Numbers like 12345 are split"]
SAMPLES = ["Hello world! 12345 is a number.", "  two  spaces\n\nand\ttabs, é ü 中文 🙂",
           "<|im_start|>user\nhi<|im_end|>\n", "def f(x):\n    return x**2  # comment"]


def transformers_reference(source: Path):
    """transformers' LlamaForCausalLM (fp32, eval) and tokenizer from an HF folder or a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.is_dir():
        return (AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval(),
                AutoTokenizer.from_pretrained(source))
    kw = {"gguf_file": source.name}
    return (AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kw).eval(),
            AutoTokenizer.from_pretrained(source.parent, **kw))


def assert_parity(folder: Path, source: Path, new_tokens: int = 32) -> None:
    """A ringbit folder imported from `source` equals transformers on `source`: tokenizer ids,
    logits (<= 1e-4) and greedy generation, on SAMPLES and PROMPTS."""
    import torch

    from ringbit.models.io import load_model_dir

    model, tok = load_model_dir(folder)
    ref, ref_tok = transformers_reference(source)
    for text in SAMPLES:
        assert tok.encode(text).ids == ref_tok(text, add_special_tokens=False)["input_ids"], text
    for prompt in PROMPTS:
        ids = torch.tensor([tok.encode(prompt).ids])
        with torch.no_grad():
            delta = (model(ids) - ref(ids).logits).abs().max().item()
        assert delta <= 1e-4, (prompt, delta)
        ours = model.generate(ids, new_tokens)[0, ids.shape[1]:].tolist()
        theirs = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False)[0, ids.shape[1]:].tolist()
        assert ours == theirs, prompt

"""KV-cache generation: equals the uncached greedy loop, batches prompts of different lengths,
matches full-forward logits, stops, truncates and samples reproducibly."""

import copy

import pytest
import torch

from ringbit.models.config import ModelConfig
from ringbit.quant.config import QuantConfig
from ringbit.models import Transformer
from ringbit.models.generate import KVCache, generate
from ringbit.quant.export import pack_model

CFG = ModelConfig(vocab_size=300, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)


def dense_model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(CFG).eval()


def bitnet_model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(CFG, quant=QuantConfig(weight_bits=1.58)).eval()


def models():
    bitnet = bitnet_model()
    return {"dense": dense_model(), "bitnet": bitnet, "packed": pack_model(copy.deepcopy(bitnet))}


@torch.no_grad()
def uncached_greedy(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """The old loop: recompute the full forward every step, take the argmax."""
    ids = torch.tensor([prompt])
    for _ in range(n):
        nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0, len(prompt):].tolist()


def prompt(length: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, CFG.vocab_size, (length,), generator=g).tolist()


PROMPTS = [prompt(n, seed) for seed, n in enumerate((7, 1, 12, 4))]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def all_models(one_thread):
    return models()


@pytest.mark.parametrize("kind", ["dense", "bitnet", "packed"])
def test_cached_greedy_equals_uncached_loop(all_models, kind):
    model = all_models[kind]
    for p in PROMPTS[:3]:
        assert generate(model, [p], 12) == [uncached_greedy(model, p, 12)]


@pytest.mark.parametrize("kind", ["dense", "bitnet", "packed"])
def test_batch_of_different_lengths_equals_each_alone(all_models, kind):
    model = all_models[kind]
    batched = generate(model, PROMPTS, 10)
    assert batched == [generate(model, [p], 10)[0] for p in PROMPTS]
    assert all(len(row) == 10 for row in batched)


def test_packed_generates_like_bitlinear(all_models):
    assert generate(all_models["packed"], PROMPTS, 8) == generate(all_models["bitnet"], PROMPTS, 8)


@torch.no_grad()
def test_prefill_and_decode_logits_match_full_forward():
    model = dense_model()
    seqs = [prompt(14, 10), prompt(9, 11)]
    prefill_lens = [6, 3]
    width = max(prefill_lens)
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.bool)
    for i, (s, n) in enumerate(zip(seqs, prefill_lens)):
        ids[i, width - n:] = torch.tensor(s[:n])
        mask[i, width - n:] = True
    cache = model.new_cache(2, width + 6, torch.float32, "cpu")
    assert isinstance(cache, KVCache) and cache.k[0].shape == (2, CFG.kv_heads, width + 6, CFG.head_dim)
    steps = [model(ids, cache=cache, key_padding_mask=mask)]
    for j in range(6):
        nxt = torch.tensor([[s[n + j]] for s, n in zip(seqs, prefill_lens)])
        steps.append(model(nxt, cache=cache))
    assert cache.length == width + 6
    for i, (s, n) in enumerate(zip(seqs, prefill_lens)):
        full = model(torch.tensor([s[: n + 6]]))[0]
        got = torch.cat([steps[0][i, width - n:]] + [st[i] for st in steps[1:]])
        torch.testing.assert_close(got, full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_default_path_unchanged_and_mask_without_cache():
    model = dense_model()
    ids = torch.randint(0, 300, (2, 10))
    # The explicit-mask path (no padding) reproduces the seam's causal attention.
    torch.testing.assert_close(model(ids, key_padding_mask=torch.ones(2, 10, dtype=torch.bool)),
                               model(ids), atol=1e-5, rtol=0)
    # Explicit positions still drive RoPE (sequence parallel shards).
    pos = torch.arange(5, 15).expand(2, 10)
    assert model(ids, pos).shape == (2, 10, 300)


def test_transformer_generate_uses_the_cache_and_keeps_its_contract():
    model = dense_model()
    ids = torch.tensor([PROMPTS[0], prompt(7, 42)])
    out = model.generate(ids, 9)
    assert out.shape == (2, 16) and torch.equal(out[:, :7], ids)
    assert out[0, 7:].tolist() == uncached_greedy(model, PROMPTS[0], 9)
    assert model.generate(ids, 0).shape == (2, 7)


def test_stop_ids_stop_a_row_and_others_continue():
    model = dense_model()
    free = generate(model, PROMPTS[:2], 10)
    stop = free[0][3]
    first = free[0].index(stop)  # the row stops at its first stop id
    assert stop not in free[1]
    out = generate(model, PROMPTS[:2], 10, stop_ids={stop})
    assert out[0] == free[0][: first + 1] and out[0][-1] == stop
    assert out[1] == free[1]
    # All rows stopped -> the batch stops (each row ends at its own stop id).
    stops = {free[0][1], free[1][2]}
    out = generate(model, PROMPTS[:2], 10, stop_ids=stops)
    for row, f in zip(out, free):
        cut = min(f.index(s) for s in stops if s in f) + 1
        assert row == f[:cut]


def test_max_seq_len_left_truncates_and_rejects_too_many_new_tokens():
    model = dense_model()
    long = prompt(80, 5)  # longer than max_seq_len 64
    out = generate(model, [long, PROMPTS[1]], 10)
    assert out[0] == uncached_greedy(model, long[-(64 - 10):], 10)
    assert out[1] == generate(model, [PROMPTS[1]], 10)[0]
    assert len(generate(model, [prompt(60, 6)], 63)[0]) == 63
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [PROMPTS[0]], 64)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.tensor([PROMPTS[0]]), 100)
    with pytest.raises(ValueError):
        generate(model, [[]], 4)


def test_sampling_is_reproducible_with_a_seed_and_tiny_top_p_is_greedy():
    model = dense_model()
    a = generate(model, PROMPTS, 12, temperature=1.0, seed=123)
    assert a == generate(model, PROMPTS, 12, temperature=1.0, seed=123)
    assert a != generate(model, PROMPTS, 12, temperature=1.0, seed=124)
    assert a != generate(model, PROMPTS, 12)  # random init: sampling at T=1 is far from greedy
    nucleus = generate(model, PROMPTS, 12, temperature=0.8, top_p=1e-6, seed=7)
    assert nucleus == generate(model, PROMPTS, 12)


def test_generate_restores_training_mode():
    model = Transformer(CFG, quant=QuantConfig(weight_bits=1.58)).train()
    generate(model, [PROMPTS[0]], 3)
    assert model.training

import torch

from ringbit.models.config import ModelConfig
from ringbit.models import Transformer, count_parameters
from ringbit.models.io import load_model_dir, save_model_dir

SMALL = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)


def test_forward_shape_and_finite():
    torch.manual_seed(0)
    model = Transformer(SMALL)
    logits = model(torch.randint(0, 300, (2, 16)))
    assert logits.shape == (2, 16, 300)
    assert torch.isfinite(logits).all()


def test_causal_future_tokens_do_not_change_the_past():
    torch.manual_seed(0)
    model = Transformer(SMALL).eval()
    ids = torch.randint(0, 300, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 300
    a, b = model(ids), model(changed)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_positions_argument_drives_rope():
    """The sequence-parallel seam: RoPE follows the positions a shard is given. RoPE is relative,
    so a constant shift changes nothing while different gaps between tokens do."""
    torch.manual_seed(0)
    model = Transformer(SMALL.model_copy(update={"n_layers": 1})).eval()
    ids = torch.randint(0, 300, (1, 8))
    default = model(ids)
    assert torch.allclose(default, model(ids, positions=torch.arange(4, 12)[None]), atol=1e-5)
    spread = model(ids, positions=torch.arange(0, 16, 2)[None])
    assert (default[0, 1:] - spread[0, 1:]).abs().max() > 1e-5


def test_gqa_and_param_count():
    cfg = SMALL.model_copy(update={"n_kv_heads": 1})
    model = Transformer(cfg)
    assert model(torch.randint(0, 300, (1, 8))).shape == (1, 8, 300)
    assert count_parameters(model) < count_parameters(Transformer(SMALL))


def test_tied_embeddings_share_storage():
    model = Transformer(SMALL)
    assert model.lm_head.weight is model.embed.weight
    untied = Transformer(SMALL.model_copy(update={"tie_embeddings": False}))
    assert count_parameters(untied) == count_parameters(model) + 300 * 32


def test_attention_and_linear_seams_are_used():
    calls = []

    def recording_attention(q, k, v, *, causal):
        calls.append((q.shape, causal))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    made = []

    def recording_linear(i, o, role):
        made.append((i, o, role))
        return torch.nn.Linear(i, o, bias=False)

    model = Transformer(SMALL, linear=recording_linear, attend=recording_attention)
    model(torch.randint(0, 300, (1, 8)))
    assert len(calls) == SMALL.n_layers and all(c for _, c in calls)
    assert len(made) == SMALL.n_layers * 7  # q k v o + gate up down
    assert {r for *_, r in made} == {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"}


def test_save_and_load_round_trip(tmp_path):
    from ringbit.data.tokenizer import train_tokenizer

    torch.manual_seed(0)
    model = Transformer(SMALL).eval()
    tok = train_tokenizer(["hello world, the quick brown fox"] * 10, 300, 1)
    save_model_dir(tmp_path, SMALL, model.state_dict(), tok.to_str())
    loaded, tok2 = load_model_dir(tmp_path)
    ids = torch.randint(0, 300, (1, 8))
    assert torch.equal(model(ids), loaded(ids))
    assert tok2.encode("hello").ids == tok.encode("hello").ids


def test_load_weights_streams_strictly_and_keeps_ties(tmp_path):
    import pytest
    from safetensors.torch import save_file, save_model

    from ringbit.models.io import load_weights

    torch.manual_seed(0)
    tied = SMALL.model_copy(update={"tie_embeddings": True})
    source, target = Transformer(tied), Transformer(tied)
    save_model(source, str(tmp_path / "w.safetensors"))  # one name for the tied embedding/LM head
    load_weights(target, tmp_path / "w.safetensors")
    assert target.lm_head.weight is target.embed.weight
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))

    state = {k: v.clone() for k, v in source.state_dict().items() if k != "lm_head.weight"}
    state["norm.weight"] = torch.ones(3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"wrong shape norm.weight \(3,\)"):
        load_weights(target, tmp_path / "bad.safetensors")
    del state["blocks.0.attn.wq.weight"]
    state["norm.weight"] = source.norm.weight.detach().clone()
    state["extra"] = torch.zeros(1)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="missing blocks.0.attn.wq.weight, unexpected extra"):
        load_weights(target, tmp_path / "bad.safetensors")


def test_generate_extends_sequence():
    model = Transformer(SMALL).eval()
    out = model.generate(torch.zeros(1, 3, dtype=torch.long), 5)
    assert out.shape == (1, 8)


def test_shipped_model_sizes_span_tests_to_1b():
    """tiny.yaml is for tests, demo.yaml ~1M, 1b-gpu.yaml ~1B (built on the meta device: no memory)."""
    from conftest import REPO
    from ringbit.config import load_config
    from ringbit.train.config import PretrainConfig

    sizes = {}
    for name in ("tiny", "demo", "1b-gpu"):
        cfg = load_config(PretrainConfig, REPO / f"jobs/configs/{name}.yaml").model
        with torch.device("meta"):
            sizes[name] = count_parameters(Transformer(cfg))
    assert sizes["tiny"] < sizes["demo"] < sizes["1b-gpu"]
    assert 1e6 <= sizes["demo"] < 2e6
    assert 0.9e9 < sizes["1b-gpu"] < 1.3e9

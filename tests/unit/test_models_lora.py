"""LoRA adapters: the wrapped model starts equal to the base, only adapters train, and merging
them gives a plain model with the same outputs."""

import pytest
import torch

from ringbit.models.config import ModelConfig
from ringbit.quant.config import QuantConfig
from ringbit.models import Transformer
from ringbit.models.lora import LoRALinear, apply_lora, merge_lora_state

CFG = ModelConfig(vocab_size=256, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)


def test_lora_trains_adapters_only_and_merges_exactly():
    torch.manual_seed(0)
    model = Transformer(CFG)
    ids = torch.randint(0, CFG.vocab_size, (2, 16))
    with torch.no_grad():
        before = model(ids)
    wrapped = apply_lora(model, r=4, alpha=8.0)
    assert wrapped == 7 * CFG.n_layers  # q, k, v, o, gate, up, down per block
    with torch.no_grad():
        assert torch.equal(model(ids), before)  # B = 0: the base model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    with torch.no_grad():
        tuned = model(ids)
    assert not torch.allclose(tuned, before)

    plain = Transformer(CFG)
    plain.load_state_dict(merge_lora_state(model.state_dict(), scale=8.0 / 4))  # strict: same keys
    with torch.no_grad():
        assert torch.allclose(plain(ids), tuned, atol=1e-5)


def test_lora_refuses_models_without_plain_linears():
    model = Transformer(CFG, quant=QuantConfig(weight_bits=1))
    with pytest.raises(ValueError, match="matched no nn.Linear"):
        apply_lora(model, r=4, alpha=8.0)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())

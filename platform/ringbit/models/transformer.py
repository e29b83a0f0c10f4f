"""Decoder-only transformer: RMSNorm, RoPE, SwiGLU, causal attention via the attention seam."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ringbit.config import ModelConfig, QuantConfig
from ringbit.models.attention import AttentionFn, get_attention
from ringbit.models.linear import LinearFactory, get_linear_factory


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 so bf16 activations do not lose the mean square.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_tables(
    head_dim: int, max_len: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (even, odd) pairs; cos/sin are (batch, seq, head_dim/2), gathered at positions."""
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, linear: LinearFactory, attend: AttentionFn) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.wq = linear(cfg.d_model, cfg.n_heads * cfg.head_dim, "wq")
        self.wk = linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, "wk")
        self.wv = linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, "wv")
        self.wo = linear(cfg.n_heads * cfg.head_dim, cfg.d_model, "wo")
        self.attend = attend

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = self.attend(q, k, v, causal=True)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig, linear: LinearFactory) -> None:
        super().__init__()
        self.w_gate = linear(cfg.d_model, cfg.hidden, "w_gate")
        self.w_up = linear(cfg.d_model, cfg.hidden, "w_up")
        self.w_down = linear(cfg.hidden, cfg.d_model, "w_down")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, linear: LinearFactory, attend: AttentionFn) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, linear, attend)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = SwiGLU(cfg, linear)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """`forward(input_ids, positions=None) -> logits`.

    `positions` lets a sequence shard carry its global token positions so RoPE follows the tokens
    (sequence parallelism); by default positions are 0..seq-1. `quant` makes every projection a
    BitLinear (ringbit.quant); embeddings, norms and the LM head stay in high precision.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        linear: LinearFactory | None = None,
        attend: AttentionFn | None = None,
        quant: QuantConfig | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.quant = cfg, quant
        linear = linear or get_linear_factory(cfg.linear, quant)
        attend = attend or get_attention(cfg.attention)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, linear, attend) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale residual output projections by depth so activations stay O(1).
        for name, p in self.named_parameters():
            if name.endswith(("wo.weight", "w_down.weight")):
                nn.init.normal_(p, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, t = input_ids.shape
        if positions is None:
            if t > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {t} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
            positions = torch.arange(t, device=input_ids.device).expand(b, t)
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.norm(x))

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0
    ) -> torch.Tensor:
        """Simple sampling (no KV cache); greedy when temperature is 0."""
        for _ in range(max_new_tokens):
            logits = self(input_ids[:, -self.cfg.max_seq_len :])[:, -1]
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = torch.multinomial(F.softmax(logits / temperature, -1), 1)
            input_ids = torch.cat([input_ids, nxt], dim=1)
        return input_ids


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

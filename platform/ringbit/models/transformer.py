"""Decoder-only transformer: RMSNorm, RoPE, SwiGLU, causal attention via the attention seam."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ringbit.models.config import ModelConfig
from ringbit.quant.config import QuantConfig
from ringbit.models.attention import AttentionFn, get_attention
from ringbit.models.generate import KVCache
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

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if attn_mask is None:  # training / sequence parallel: the attention seam, causal
            out = self.attend(q, k, v, causal=True)
        else:  # inference: explicit mask [B, 1, t, keys], keys from the cache when there is one
            if cache is not None:
                start, end = cache.length, cache.length + t
                cache.k[layer][:, :, start:end] = k
                cache.v[layer][:, :, start:end] = v
                k, v = cache.k[layer][:, :, :end], cache.v[layer][:, :, :end]
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, enable_gqa=self.n_kv != self.n_heads
            )
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

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, attn_mask, cache, layer)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """`forward(input_ids, positions=None, cache=None, key_padding_mask=None) -> logits`.

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
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, vocab].

        Without `cache` and `key_padding_mask` this is the training path (causal attention through
        the attention seam). With a `cache` (from `new_cache`) the keys/values of `input_ids` are
        written at slots [cache.length, cache.length + T) and the new queries attend over every
        cached slot up to their own (a bottom-right-aligned causal mask); prefill passes the whole
        left-padded prompt batch, decode one token per row. `key_padding_mask` [B, T] (True = real
        token) marks padding among the new tokens; it is kept in the cache so later steps never see
        those slots. Default positions with a mask/cache count real tokens only: each row's RoPE
        positions run 0..len-1 whatever its padding (padding slots get position 0).
        """
        b, t = input_ids.shape
        if cache is None and key_padding_mask is None:
            if positions is None:
                if t > self.cfg.max_seq_len:
                    raise ValueError(f"sequence of {t} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
                positions = torch.arange(t, device=input_ids.device).expand(b, t)
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
            x = self.embed(input_ids)
            for block in self.blocks:
                x = block(x, cos, sin)
            return self.lm_head(self.norm(x))
        return self._forward_masked(input_ids, positions, cache, key_padding_mask)

    def _forward_masked(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None,
        cache: KVCache | None,
        key_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t = input_ids.shape
        device = input_ids.device
        new_valid = (
            torch.ones(b, t, dtype=torch.bool, device=device)
            if key_padding_mask is None else key_padding_mask.to(device=device, dtype=torch.bool)
        )
        if new_valid.shape != (b, t):
            raise ValueError(f"key_padding_mask {tuple(new_valid.shape)} must match input_ids {(b, t)}")
        start = 0
        if cache is not None:
            if cache.batch != b:
                raise ValueError(f"cache batch {cache.batch} != input batch {b}")
            start = cache.length
            if start + t > cache.max_len:
                raise ValueError(f"cache of {cache.max_len} slots cannot hold {start + t} tokens")
        if positions is None:
            base = cache.next_pos[:, None] if cache is not None else 0
            positions = (base + new_valid.long().cumsum(1) - 1).clamp(min=0)
        if int(positions.max()) >= self.cfg.max_seq_len:
            raise ValueError(f"position {int(positions.max())} exceeds max_seq_len {self.cfg.max_seq_len}")
        end = start + t
        if cache is not None:
            cache.valid[:, start:end] = new_valid
            keys_valid = cache.valid[:, :end]
        else:
            keys_valid = new_valid
        q_slot = torch.arange(start, end, device=device)[:, None]
        k_slot = torch.arange(end, device=device)[None, :]
        # Bottom-right-aligned causal mask and the key padding mask. A query always sees its own
        # slot, so padding queries keep one finite key (no all-masked row, no NaN in the cache).
        attn_mask = (k_slot <= q_slot) & (keys_valid[:, None, :] | (k_slot == q_slot))
        attn_mask = attn_mask[:, None]  # [B, 1, t, end], broadcast over heads
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        x = self.embed(input_ids)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, attn_mask, cache, i)
        if cache is not None:
            cache.length = end
            cache.next_pos += new_valid.sum(1)
        return self.lm_head(self.norm(x))

    def new_cache(
        self,
        batch: int,
        max_len: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> KVCache:
        """An empty KV cache for `batch` rows and `max_len` slots (padding included)."""
        cfg = self.cfg
        return KVCache.allocate(
            cfg.n_layers, batch, cfg.kv_heads, max_len, cfg.head_dim,
            dtype or self.embed.weight.dtype, device if device is not None else self.rope_cos.device,
        )

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0
    ) -> torch.Tensor:
        """input_ids [B, T] followed by up to max_new_tokens new tokens each: [B, T + new].

        KV-cache decoding via `ringbit.models.generate.generate` (greedy when temperature is 0); a
        prompt longer than max_seq_len - max_new_tokens is left-truncated for the model (the
        returned ids keep the whole input), and max_new_tokens >= max_seq_len raises ValueError.
        """
        from ringbit.models.generate import generate

        new = generate(self, input_ids.tolist(), max_new_tokens, temperature)
        new_ids = torch.tensor(new, dtype=input_ids.dtype, device=input_ids.device)
        return torch.cat([input_ids, new_ids.reshape(input_ids.shape[0], -1)], dim=1)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

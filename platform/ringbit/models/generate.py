"""KV-cache generation for the decoder, batching prompts of different lengths.

Prompts are left-padded to a common length so that every row's newest token sits in the same
cache slot. Padding slots are hidden by a key padding mask stored in the cache, and every row gets
its own RoPE positions (0..len-1 over its real tokens), so a prompt generates the same tokens in a
batch as alone. Prefill runs the whole padded prompt batch in one forward; each decode step feeds
one token per row.

Context limit: prompt + new tokens must fit `model.cfg.max_seq_len`. A longer prompt is
left-truncated to its last `max_seq_len - max_new_tokens` tokens (the start of the prompt is
dropped); `max_new_tokens >= max_seq_len` raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class KVCache:
    """Preallocated keys/values for every layer, written in place by `Transformer.forward`.

    k[i], v[i]: [batch, n_kv_heads, max_len, head_dim] for layer i; slots [0, length) are filled.
    valid: [batch, max_len] bool, False for padding slots (the key padding mask of the cache).
    next_pos: [batch] long, the RoPE position the next real token of each row gets (= the count of
    real tokens cached so far).
    Create one with `Transformer.new_cache(batch, max_len, dtype, device)`.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    valid: torch.Tensor
    next_pos: torch.Tensor
    length: int = 0

    @classmethod
    def allocate(
        cls, n_layers: int, batch: int, n_kv_heads: int, max_len: int, head_dim: int,
        dtype: torch.dtype, device: torch.device | str | None = None,
    ) -> "KVCache":
        shape = (batch, n_kv_heads, max_len, head_dim)
        return cls(
            k=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
            v=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
            valid=torch.zeros(batch, max_len, dtype=torch.bool, device=device),
            next_pos=torch.zeros(batch, dtype=torch.long, device=device),
        )

    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """[B, V] logits -> [B] token ids: argmax when temperature <= 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        drop[:, 0] = False
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_ids: set[int] | None = None,
    seed: int | None = None,
) -> list[list[int]]:
    """New tokens for each prompt (prompt tokens not included); greedy when temperature == 0.

    Prompts of different lengths are batched: left padding, a key padding mask, and per-row
    positions so RoPE sees 0..len-1 for every prompt. A row stops at its first stop id (the stop id
    is included in the output) or at max_new_tokens; the batch stops when all rows stopped.
    Prompt + new tokens longer than model.cfg.max_seq_len: the prompt is left-truncated to its last
    max_seq_len - max_new_tokens tokens. ValueError if max_new_tokens >= max_seq_len or a prompt is
    empty. `top_p` < 1 samples from the nucleus (smallest set of tokens with that much mass);
    `seed` makes sampling reproducible (a torch.Generator; None = the global RNG).
    The model runs in eval mode for the call (BitLinear quantizes activations per token there,
    which is what makes a row independent of its batch) and gets its previous mode back.
    """
    max_seq_len = model.cfg.max_seq_len
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens >= max_seq_len:
        raise ValueError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in max_seq_len {max_seq_len}"
        )
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    prompts = [list(p) for p in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if not prompts or max_new_tokens == 0:
        return [[] for _ in prompts]

    keep = max_seq_len - max_new_tokens
    prompts = [p[-keep:] for p in prompts]  # left-truncate so prompt + new fits the context
    device = model.rope_cos.device
    dtype = model.embed.weight.dtype
    b, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.zeros(b, width, dtype=torch.long, device=device)
    mask = torch.zeros(b, width, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
        mask[i, width - len(p):] = True

    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    stops = torch.tensor(sorted(stop_ids or ()), dtype=torch.long, device=device)

    was_training = model.training
    model.eval()
    try:
        # The last new token is never fed back, so the cache needs width + max_new_tokens - 1 slots.
        cache = model.new_cache(b, width + max_new_tokens - 1, dtype=dtype, device=device)
        logits = model(ids, cache=cache, key_padding_mask=mask)[:, -1]
        out = torch.empty(b, max_new_tokens, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        lengths = torch.full((b,), max_new_tokens, dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_p, generator)
            out[:, step] = nxt
            hit = ~done & torch.isin(nxt, stops)
            lengths = torch.where(hit, step + 1, lengths)
            done |= hit
            if step + 1 == max_new_tokens or bool(done.all()):
                break
            logits = model(nxt[:, None], cache=cache)[:, -1]
    finally:
        model.train(was_training)
    out, lengths = out.tolist(), lengths.tolist()
    return [row[:n] for row, n in zip(out, lengths)]

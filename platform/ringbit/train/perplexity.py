"""Validation log-perplexity = total NLL / number of predicted tokens over the whole split.

Workers reduce the two sums (never a mean of per-worker means), so the value does not depend on
how rows are spread over workers. val_ppl = exp(val_loss).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F

Model = Callable[[torch.Tensor], torch.Tensor]


def nll_sums(model: Model, rows: Iterable[torch.Tensor], device: str | torch.device = "cpu") -> tuple[float, int]:
    """(sum of -log p(next token), number of predicted tokens) over rows of seq_len + 1 ids."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in rows:
            batch = batch.to(device)
            logits = model(batch[:, :-1]).float()
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum"
            ).item()
            count += batch[:, 1:].numel()
    return total, count


def all_reduce_sums(total: float, count: int, device: str | torch.device = "cpu") -> tuple[float, int]:
    """Sum (nll, tokens) over all ranks; a no-op outside torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return total, count
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t[0].item(), int(t[1].item())


def perplexity(total_nll: float, count: int) -> tuple[float, float]:
    """(log-perplexity, perplexity)."""
    if count == 0:
        raise ValueError("no predicted tokens: the evaluation text is empty or shorter than 2 tokens")
    loss = total_nll / count
    return loss, math.exp(loss)


def sliding_window_nll(
    model: Model, ids: torch.Tensor, context: int, stride: int, device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> tuple[float, int]:
    """NLL of a long 1-D token sequence with windows of `context` tokens moved by `stride`.

    Each window scores only the tokens no earlier window scored, so every token after the first is
    counted once, and with stride < context each gets up to context - stride tokens of history.
    """
    if not 0 < stride <= context:
        raise ValueError(f"stride ({stride}) must be in 1..context ({context})")
    total, count, scored_to = 0.0, 0, 1  # token 0 has no history: never a target
    n = ids.numel()
    if n < 2:
        return 0.0, 0
    with torch.no_grad():
        for begin in range(0, max(n - 1, 1), stride):
            end = min(begin + context, n - 1)
            window = ids[begin : end + 1].to(device)[None]
            logits = model(window[:, :-1]).float()[0]
            targets = window[0, 1:]
            first_new = scored_to - (begin + 1)  # index into targets of the first unscored token
            if first_new < len(targets):
                total += F.cross_entropy(logits[first_new:], targets[first_new:], reduction="sum").item()
                count += len(targets) - first_new
                scored_to = end + 1
            if progress:
                progress(end + 1)
            if end + 1 >= n:
                break
    return total, count

"""Log-perplexity of a model (folder, MLflow run or registry reference) on a text, with a sliding
window for texts longer than the context: what `ringbit eval-ppl` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


class PerplexityInputError(ValueError):
    """An input the user must fix (no such text or model, a window that does not fit the model);
    the message names the option."""


def eval_perplexity(model: str, data: str, context: int | None = None, stride: int | None = None,
                    mlflow_uri: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """{log_ppl, ppl, tokens, context, stride} of `model` on `data` (a text file or a builtin
    corpus name); `progress(tokens_done, tokens_total)` as windows are scored."""
    import torch

    from ringbit.data.corpus import BUILTINS, builtin_documents
    from ringbit.data.tokenizer import EOS
    from ringbit.models.io import load_model_dir
    from ringbit.tracking import resolve_model_ref
    from ringbit.train.perplexity import perplexity, sliding_window_nll

    if data not in BUILTINS and not Path(data).is_file():
        raise PerplexityInputError(f"--data {data!r}: no such file")
    try:
        lm, tok = load_model_dir(resolve_model_ref(model, mlflow_uri))
    except FileNotFoundError as exc:
        raise PerplexityInputError(str(exc)) from None
    if data in BUILTINS:
        text = EOS.join(builtin_documents(data))
    else:
        text = Path(data).read_text(errors="replace")
    ids = torch.tensor(tok.encode(text).ids)
    ctx = context or lm.cfg.max_seq_len
    if ctx > lm.cfg.max_seq_len:
        raise PerplexityInputError(f"--context {ctx} exceeds the model's max_seq_len {lm.cfg.max_seq_len}")
    step = stride or max(1, ctx // 2)
    if not 0 < step <= ctx:
        raise PerplexityInputError(f"--stride must be between 1 and the context ({ctx})")
    report = progress or (lambda done, total: None)
    report(0, len(ids))
    total, count = sliding_window_nll(lm, ids, ctx, step, progress=lambda n: report(n, len(ids)))
    if count == 0:
        raise PerplexityInputError("the text has fewer than 2 tokens")
    loss, ppl = perplexity(total, count)
    return {"log_ppl": loss, "ppl": ppl, "tokens": count, "context": ctx, "stride": step}

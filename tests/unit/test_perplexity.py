import math

import pytest
import torch

from helpers import spawn_gloo
from ringbit.models.config import ModelConfig
from ringbit.data.loader import eval_batches
from ringbit.models import Transformer
from ringbit.train.perplexity import all_reduce_sums, nll_sums, perplexity, sliding_window_nll


class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token distribution is the same everywhere: p = softmax(logits)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, ids):
        return self.logits.expand(*ids.shape, -1)


def test_hand_computed_perplexity():
    # p = softmax([ln 1, ln 2, ln 1]) = [1/4, 1/2, 1/4]; targets 1, 0, 2, 1 ->
    # NLL = ln2 + ln4 + ln4 + ln2 = 6 ln 2; mean over 4 predictions = 1.5 ln 2; ppl = 2^1.5
    model = FixedLogits([0.0, math.log(2), 0.0])
    rows = [torch.tensor([[0, 1, 0, 2, 1]])]
    total, count = nll_sums(model, rows)
    assert count == 4
    assert total == pytest.approx(6 * math.log(2))
    loss, ppl = perplexity(total, count)
    assert loss == pytest.approx(1.5 * math.log(2))
    assert ppl == pytest.approx(2**1.5)


def test_empty_text_is_an_error():
    with pytest.raises(ValueError, match="no predicted tokens"):
        perplexity(0.0, 0)


CFG = ModelConfig(vocab_size=257, d_model=32, n_layers=1, n_heads=2, max_seq_len=16)


def _rows():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 257, (11, 17), generator=g).numpy()  # 11 rows: uneven over 2 workers


def _model():
    torch.manual_seed(0)
    return Transformer(CFG).eval()


def _worker(rank, world):
    return all_reduce_sums(*nll_sums(_model(), eval_batches(_rows(), rank, world, 3)))


def test_two_workers_equal_one_worker():
    one = nll_sums(_model(), eval_batches(_rows(), 0, 1, 3))
    out = spawn_gloo(_worker, 2, preload=[__name__])
    assert out[0][1] == out[1][1] == one[1] == 11 * 16
    assert out[0][0] == pytest.approx(one[0], rel=1e-9)
    assert perplexity(*out[1]) == pytest.approx(perplexity(*one), rel=1e-9)


def test_sliding_window_counts_each_token_once_and_matches_full_context():
    model = _model()
    ids = torch.randint(0, 257, (40,))
    # A window long enough for the whole text equals a single forward pass.
    short = ids[:15]
    total, count = sliding_window_nll(model, short, context=16, stride=8)
    ref_total, ref_count = nll_sums(model, [short[None]])
    assert count == ref_count == 14 and total == pytest.approx(ref_total, rel=1e-6)
    for stride in (1, 5, 16):
        _, count = sliding_window_nll(model, ids, context=16, stride=stride)
        assert count == len(ids) - 1
    # Longer history can only be compared statistically; at least it must change the value.
    t_small, _ = sliding_window_nll(model, ids, context=16, stride=16)
    t_slide, _ = sliding_window_nll(model, ids, context=16, stride=4)
    assert t_small != pytest.approx(t_slide)


def test_sliding_window_rejects_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        sliding_window_nll(_model(), torch.arange(10), context=8, stride=9)

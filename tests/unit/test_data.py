"""ringbit.data without Ray: corpora, tokenizer, validation split, batching.

prepare() runs Ray Data: its tests are in tests/integration/test_data_prepare.py.
"""

import numpy as np
import pytest

from ringbit.data.corpus import BUILTIN, TOPICS, builtin_documents, read_documents
from ringbit.data.loader import TrainBatches, eval_batches
from ringbit.data.prepare import in_validation
from ringbit.data.tokenizer import EOS, eos_id, train_tokenizer


def test_builtin_corpora_are_real_english_offline():
    topics, docs = builtin_documents(TOPICS), builtin_documents(BUILTIN)
    assert docs[: len(topics)] == topics and len(docs) > len(topics) + 1000
    assert sum(map(len, docs)) > 1_000_000
    text = " ".join(topics)
    assert len(topics) > 100 and len(text) > 300_000
    words = text.lower().split()
    # Real prose: the commonest English words are frequent (random tokens would not be).
    for w in ("the", "is", "of", "a", "to"):
        assert words.count(w) > 500, w


def test_tokenizer_round_trip_any_text():
    tok = train_tokenizer(builtin_documents(TOPICS)[:200], vocab_size=512)
    assert tok.get_vocab_size() == 512
    for text in ("The for statement iterates.", "ünïcödé ✓ 漢字 \t\n  spaces", ""):
        assert tok.decode(tok.encode(text).ids) == text
    assert tok.id_to_token(eos_id(tok)) == EOS


def test_validation_split_is_seeded_and_stable():
    docs = builtin_documents(TOPICS)
    a = [in_validation(d, 0, 0.1) for d in docs]
    assert a == [in_validation(d, 0, 0.1) for d in docs]
    assert a != [in_validation(d, 1, 0.1) for d in docs]
    assert 0.05 < sum(a) / len(a) < 0.15


def test_unknown_corpus_path_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=BUILTIN):
        read_documents(str(tmp_path / "missing"))


def test_train_batches_are_disjoint_deterministic_and_resumable():
    rows = np.arange(50 * 5, dtype=np.int32).reshape(50, 5)
    ranks = [TrainBatches(rows, r, 2, 4, accum=2, seed=7) for r in range(2)]  # global batch 16
    assert ranks[0].steps_per_epoch == 3
    epoch = [b.batch(s, m) for s in range(3) for m in range(2) for b in ranks]
    firsts = np.concatenate([x[:, 0].numpy() for x in epoch])
    assert len(firsts) == 48 and len(set(firsts)) == 48  # no row read twice in an epoch
    fresh = TrainBatches(rows, 0, 2, 4, accum=2, seed=7)
    assert np.array_equal(fresh.batch(5, 1).numpy(), ranks[0].batch(5, 1).numpy())  # resume = same batch
    assert not np.array_equal(ranks[0].batch(0, 0).numpy(), ranks[0].batch(3, 0).numpy())  # reshuffled


def test_a_step_holds_the_same_rows_whatever_the_worker_count():
    rows = np.arange(64 * 3, dtype=np.int32).reshape(64, 3)
    two = {tuple(r) for d in range(2) for m in range(1) for r in TrainBatches(rows, d, 2, 4, 1, 3).batch(2, m).tolist()}
    one = {tuple(r) for m in range(2) for r in TrainBatches(rows, 0, 1, 4, 2, 3).batch(2, m).tolist()}
    assert one == two and len(one) == 8


def test_eval_batches_cover_every_row_once():
    rows = np.arange(11 * 3).reshape(11, 3)
    seen = [b[:, 0].tolist() for r in range(3) for b in eval_batches(rows, r, 3, 2)]
    assert sorted(x for b in seen for x in b) == list(range(0, 33, 3))


def test_too_little_data_for_the_batch_is_explained():
    with pytest.raises(ValueError, match="global_batch_size"):
        TrainBatches(np.zeros((3, 5), np.int32), 0, 2, 4, accum=1, seed=0)

"""ringbit.data.prepare on a private local Ray (Ray Data): shards, caching, jsonl/text sources.

Moved from tests/unit/test_data.py (the Ray-free data tests stay there).
"""

import json

import numpy as np
import pytest

from ringbit.data.config import DataConfig
from ringbit.data.corpus import TOPICS, builtin_documents, read_documents
from ringbit.data.prepare import fingerprint, load_split, prepare


@pytest.fixture(scope="module")
def prepared(local_ray, tmp_path_factory):
    cfg = DataConfig(corpus=TOPICS, seq_len=32)
    return cfg, prepare(cfg, 512, tmp_path_factory.mktemp("data"))


def test_shards_round_trip(prepared):
    cfg, out = prepared
    meta = json.loads((out / "meta.json").read_text())
    train, val = load_split(out, "train"), load_split(out, "val")
    assert train.shape == (meta["sequences"]["train"], 33) and val.shape[1] == 33
    assert train.dtype == np.int32 and train.max() < 512
    # Stride seq_len: each row starts with the previous row's last token (no target lost).
    assert train[0, -1] == train[1, 0]
    from ringbit.data.prepare import data_tokenizer

    text = data_tokenizer(out).decode(train[0].tolist())
    assert any(w in text for w in (" the ", " a ", " of "))


def test_prepare_is_cached_and_deterministic(prepared, tmp_path):
    cfg, out = prepared
    assert prepare(cfg, 512, out.parent) == out  # cache hit: same folder
    again = prepare(cfg, 512, tmp_path)  # fresh build elsewhere
    assert np.array_equal(load_split(again, "train"), load_split(out, "train"))
    assert np.array_equal(load_split(again, "val"), load_split(out, "val"))
    assert fingerprint(cfg, 512) != fingerprint(cfg.model_copy(update={"seed": 1}), 512)


def test_prepare_reads_jsonl_and_text_files(local_ray, tmp_path):
    docs = builtin_documents(TOPICS)[:120]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"body": d}) for d in docs))
    out = prepare(DataConfig(corpus=str(tmp_path / "corpus.jsonl"), text_field="body", seq_len=32,
                             val_fraction=0.2), 300, tmp_path / "cache")
    assert load_split(out, "train").shape[0] > 100
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("\n\n".join(docs))
    assert len(read_documents(str(tmp_path / "txt"))) >= len(docs)

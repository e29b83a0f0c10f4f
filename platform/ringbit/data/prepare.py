"""Corpus -> tokenizer -> Parquet shards of packed token ids, as a Ray Data pipeline.

read (text / JSONL / Parquet / built-in) -> tokenize in map_batches -> split train/val by a seeded
hash of each document -> pack into rows of seq_len + 1 tokens -> write_parquet. The same code runs
on this machine and on a cluster; the result is cached under a fingerprint of every input, and
written to a temporary folder first so a crash never leaves a half-written dataset behind.

The tokenizer is a byte-level BPE trained on the corpus, or, for continued pretraining
(`init_from`), the base model's own tokenizer.json (then part of the fingerprint, and copied into
the dataset folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ringbit.data.config import DataConfig
from ringbit.data.corpus import BUILTINS, corpus_files, corpus_kind, read_documents
from ringbit.data.tokenizer import (
    document_eos_id,
    eos_id,
    load_tokenizer,
    read_tokenizer_config,
    train_tokenizer,
)

FORMAT_VERSION = 1
TOKENIZER_DOCS = 50_000  # enough text for a BPE vocabulary; keeps tokenizer training bounded


def fingerprint(cfg: DataConfig, vocab_size: int, tokenizer_json: str | None = None,
                eos: int | None = None) -> str:
    """Every input of the dataset; `tokenizer_json` (a given tokenizer instead of a trained one)
    and its document separator `eos` join it only when given, so older caches stay valid."""
    parts: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "corpus": cfg.corpus,
        "text_field": cfg.text_field,
        "seq_len": cfg.seq_len,
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "min_frequency": cfg.min_frequency,
        "vocab_size": vocab_size,
    }
    if tokenizer_json is not None:
        parts["tokenizer"] = hashlib.sha256(tokenizer_json.encode()).hexdigest()
        parts["eos"] = eos
    if cfg.corpus in BUILTINS:
        parts["python"] = sys.version  # the built-in text ships with (and varies by) CPython
    else:
        parts["files"] = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in corpus_files(cfg.corpus)]
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def in_validation(text: str, seed: int, fraction: float) -> bool:
    """Seeded hash split: deterministic, order-free, and duplicates land on the same side."""
    h = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


class Tokenize:
    """map_batches UDF: text -> token ids (+ EOS) and the split each document belongs to."""

    def __init__(self, tokenizer_json: str, seed: int, val_fraction: float, text_field: str,
                 eos: int | None = None):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(tokenizer_json)
        self.eos = eos_id(self.tok) if eos is None else eos
        self.seed, self.val_fraction, self.text_field = seed, val_fraction, text_field

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = [str(t) for t in batch[self.text_field] if t is not None and str(t).strip()]
        encoded = self.tok.encode_batch(texts, add_special_tokens=False)
        return {
            "ids": [np.asarray(e.ids + [self.eos], dtype=np.int32) for e in encoded],
            "val": np.asarray([in_validation(t, self.seed, self.val_fraction) for t in texts]),
        }


def pack(batch: dict[str, np.ndarray], seq_len: int, val: bool) -> pa.Table:
    """Concatenate one split's documents and cut rows of seq_len + 1 tokens with stride seq_len,
    so each token after the first is a prediction target exactly once. The batch's tail is dropped."""
    docs = [np.asarray(x, dtype=np.int32) for x, v in zip(batch["ids"], batch["val"]) if v == val]
    stream = np.concatenate(docs) if docs else np.zeros(0, np.int32)
    n = (len(stream) - 1) // seq_len if len(stream) > seq_len else 0
    rows = [stream[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)]
    # A plain list<int32> column: readable by any Parquet tool, not only Ray's tensor type.
    return pa.table({"input_ids": pa.array(rows, type=pa.list_(pa.int32()))})


def _read(cfg: DataConfig, docs: list[str] | None):
    import ray.data

    if cfg.corpus in BUILTINS:
        return ray.data.from_items([{cfg.text_field: d} for d in docs])
    files = [str(p) for p in corpus_files(cfg.corpus)]
    kind = corpus_kind(cfg.corpus)
    if kind == "text":
        return ray.data.read_text(files, drop_empty_lines=True).rename_columns({"text": cfg.text_field})
    if kind == "json":
        return ray.data.read_json(files)
    return ray.data.read_parquet(files, columns=[cfg.text_field])


def _cpus() -> int:
    import ray

    return max(1, int(ray.available_resources().get("CPU", 1)))


def given_tokenizer(tokenizer_dir: str | Path, vocab_size: int):
    """(tokenizer.json text, Tokenizer, tokenizer_config, document separator id) of a model
    folder whose tokenizer the data must use; its ids must fit the model's embedding."""
    from tokenizers import Tokenizer

    text = (Path(tokenizer_dir) / "tokenizer.json").read_text()
    tok = Tokenizer.from_str(text)
    if tok.get_vocab_size() > vocab_size:
        raise ValueError(f"{tokenizer_dir}/tokenizer.json has {tok.get_vocab_size()} tokens, more than "
                         f"the model's vocab_size {vocab_size}")
    tok_cfg = read_tokenizer_config(tokenizer_dir)
    return text, tok, tok_cfg, document_eos_id(tok, tok_cfg)


def prepare(cfg: DataConfig, vocab_size: int, cache_root: str | Path, log=print,
            tokenizer_dir: str | Path | None = None) -> Path:
    """Build (or reuse) the dataset folder: tokenizer.json, train/, val/, meta.json.

    tokenizer_dir: a model folder whose tokenizer.json to use instead of training a BPE on the
    corpus (continued pretraining from that model); documents end with its <|endoftext|> (or its
    tokenizer_config's eos_token). The chat template is not part of the data: the job passes the
    base's tokenizer_config.json to the saved model itself."""
    import ray.data

    given = given_tokenizer(tokenizer_dir, vocab_size) if tokenizer_dir is not None else None
    key = fingerprint(cfg, vocab_size, *(given[0], given[3]) if given else ())
    out = Path(cache_root).expanduser() / key
    if (out / "meta.json").exists():
        log(f"[ringbit] data: reusing prepared shards in {out}")
        return out
    log(f"[ringbit] data: preparing {cfg.corpus} -> {out}"
        + (f" with the tokenizer of {tokenizer_dir}" if given else ""))
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        docs = read_documents(cfg.corpus, cfg.text_field) if cfg.corpus in BUILTINS else None
        if given:
            _, tok, _, eos = given
            (tmp / "tokenizer.json").write_text(given[0])
        else:
            sample = docs if docs is not None else read_documents(cfg.corpus, cfg.text_field)[:TOKENIZER_DOCS]
            tok = train_tokenizer(sample, vocab_size, cfg.min_frequency)
            if tok.get_vocab_size() != vocab_size:
                log(f"[ringbit] data: corpus only supports {tok.get_vocab_size()} tokens (< {vocab_size})")
            tok.save(str(tmp / "tokenizer.json"))
            eos = eos_id(tok)

        ray.data.DataContext.get_current().execution_options.preserve_order = True
        tokenized = _read(cfg, docs).map_batches(
            Tokenize,
            fn_constructor_kwargs=dict(
                tokenizer_json=tok.to_str(), seed=cfg.seed, val_fraction=cfg.val_fraction,
                text_field=cfg.text_field, eos=eos,
            ),
            batch_size=256,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=_cpus()),
        ).materialize()
        counts = {}
        for split, is_val in (("train", False), ("val", True)):
            packed = tokenized.map_batches(
                pack, fn_kwargs={"seq_len": cfg.seq_len, "val": is_val}, batch_size=1024
            )
            packed.write_parquet(str(tmp / split))
            counts[split] = load_split(tmp, split).shape[0]
            if counts[split] == 0:
                raise ValueError(
                    f"data: the {split} split has no full sequence of {cfg.seq_len + 1} tokens; "
                    "use a larger corpus, a smaller data.seq_len or a larger data.val_fraction"
                )
        meta = {"fingerprint": out.name, "seq_len": cfg.seq_len, "vocab_size": tok.get_vocab_size(),
                "sequences": counts, "config": cfg.model_dump(mode="json"), "eos_id": eos,
                "tokenizer_from": str(tokenizer_dir) if given else None}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, out)  # atomic publish; a concurrent job may have won the race
        except OSError:
            if not (out / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"[ringbit] data: {counts['train']} train / {counts['val']} val sequences of {cfg.seq_len} tokens")
    return out


def load_split(data_dir: str | Path, split: str) -> np.ndarray:
    """All packed rows of a split as an (n, seq_len + 1) int32 array, in file-name order."""
    import pyarrow.parquet as pq

    files = sorted((Path(data_dir) / split).glob("*.parquet"))
    if not files:
        return np.zeros((0, 0), dtype=np.int32)
    tables = [pq.read_table(f, columns=["input_ids"], memory_map=True) for f in files]
    col = pa.concat_tables(tables).column("input_ids").combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), dtype=np.int32)
    width = len(col[0])
    return col.values.to_numpy(zero_copy_only=False).astype(np.int32).reshape(len(col), width)


def data_tokenizer(data_dir: str | Path):
    return load_tokenizer(Path(data_dir) / "tokenizer.json")

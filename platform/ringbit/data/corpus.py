"""Text sources. The built-in corpus is real English that ships with every CPython: the
documentation topics used by `help()` (pydoc_data), so demos and tests need no network."""

from __future__ import annotations

import re
from pathlib import Path

BUILTIN = "builtin:python-docs"
TEXT_SUFFIXES = {".txt", ".md", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".json", ".parquet"}


def builtin_documents(max_chars: int = 4000) -> list[str]:
    """Python's documentation topics, split on paragraph breaks into documents of ~max_chars.

    Smaller documents give the validation split a fair sample of every topic's style.
    """
    from pydoc_data.topics import topics

    docs: list[str] = []
    for key in sorted(topics):
        current = ""
        for para in re.split(r"\n\s*\n", topics[key].strip()):
            if current and len(current) + len(para) > max_chars:
                docs.append(current)
                current = ""
            current = f"{current}\n\n{para}" if current else para
        if current.strip():
            docs.append(current)
    return docs


def corpus_files(spec: str) -> list[Path]:
    """Files behind a path spec, sorted, so the corpus order never depends on the filesystem."""
    path = Path(spec).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    else:
        raise FileNotFoundError(
            f"data.corpus {spec!r} is neither {BUILTIN!r} nor an existing file or directory"
        )
    if not files:
        raise FileNotFoundError(f"data.corpus {spec!r} holds no {sorted(SUFFIXES)} files")
    kinds = {_kind(p) for p in files}
    if len(kinds) > 1:
        raise ValueError(f"data.corpus {spec!r} mixes formats {sorted(kinds)}; use one per corpus")
    return files


def _kind(p: Path) -> str:
    return "text" if p.suffix in TEXT_SUFFIXES else ("json" if p.suffix in {".jsonl", ".json"} else "parquet")


def corpus_kind(spec: str) -> str:
    return "builtin" if spec == BUILTIN else _kind(corpus_files(spec)[0])


def read_documents(spec: str, text_field: str = "text") -> list[str]:
    """All documents of a corpus in memory (for tokenizer training and small evaluations)."""
    if spec == BUILTIN:
        return builtin_documents()
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    docs: list[str] = []
    for f in corpus_files(spec):
        kind = _kind(f)
        if kind == "text":
            docs.extend(p for p in re.split(r"\n\s*\n", f.read_text(errors="replace")) if p.strip())
        else:
            table = pajson.read_json(f) if kind == "json" else pq.read_table(f)
            if text_field not in table.column_names:
                raise ValueError(
                    f"{f}: no column {text_field!r} (has {table.column_names}); set data.text_field"
                )
            docs.extend(str(t) for t in table.column(text_field).to_pylist() if t)
    return docs

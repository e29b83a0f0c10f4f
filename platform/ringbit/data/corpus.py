"""Text sources. The built-in corpora are real English that ships with every CPython, so demos
and tests need no network:

- builtin:python-topics: the documentation topics behind `help()` (pydoc_data), ~0.5 MB;
- builtin:python-docs: those topics plus the prose docstrings of the standard library's own
  source (read with `ast`, nothing imported), ~1.6 MB.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

BUILTIN = "builtin:python-docs"
TOPICS = "builtin:python-topics"
BUILTINS = (BUILTIN, TOPICS)
# Packages whose docstrings are tests, demos or GUI glue rather than documentation prose.
SKIP_PACKAGES = {"test", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo", "ensurepip"}
TEXT_SUFFIXES = {".txt", ".md", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".json", ".parquet"}


def _chunks(text: str, max_chars: int) -> list[str]:
    """Split on paragraph breaks into documents of about max_chars, so the validation split
    samples every source rather than a few whole topics."""
    docs, current = [], ""
    for para in re.split(r"\n\s*\n", text.strip()):
        if current and len(current) + len(para) > max_chars:
            docs.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current.strip():
        docs.append(current)
    return docs


def topic_documents(max_chars: int = 4000) -> list[str]:
    from pydoc_data.topics import topics

    return [d for key in sorted(topics) for d in _chunks(topics[key], max_chars)]


def docstring_documents(min_chars: int = 200) -> list[str]:
    """Prose docstrings (modules, classes, functions) of the stdlib, in sorted file order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in SKIP_PACKAGES or "tests" in parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    docs.append(doc)
    return docs


def builtin_documents(name: str = BUILTIN) -> list[str]:
    if name == TOPICS:
        return topic_documents()
    if name == BUILTIN:
        return topic_documents() + docstring_documents()
    raise ValueError(f"unknown built-in corpus {name!r}; choose one of {', '.join(BUILTINS)}")


def corpus_files(spec: str) -> list[Path]:
    """Files behind a path spec, sorted, so the corpus order never depends on the filesystem."""
    path = Path(spec).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    else:
        raise FileNotFoundError(
            f"data.corpus {spec!r} is neither one of {', '.join(BUILTINS)} nor an existing file or directory"
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
    return "builtin" if spec in BUILTINS else _kind(corpus_files(spec)[0])


def read_documents(spec: str, text_field: str = "text") -> list[str]:
    """All documents of a corpus in memory (for tokenizer training and small evaluations)."""
    if spec in BUILTINS:
        return builtin_documents(spec)
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

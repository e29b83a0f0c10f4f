"""Offline tools for the ReAct agent. FireAct's `search` was Google (via SerpAPI: the answer box,
else the first organic snippet); offline it is either a BM25 index over local passages or a cache
of query -> result pairs, e.g. the (query, observation) pairs recorded in FireAct's released
trajectories, which replays the paper's Google results."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np
from rank_bm25 import BM25Okapi

from ringbit.agents.react.trajectories import Trajectory, parse_action

__all__ = ["NO_RESULTS", "BM25Search", "rank_passages", "CachedSearch", "Tool", "build_search_cache",
           "first_sentences", "load_tools", "normalize_query", "read_search_cache",
           "write_search_cache"]

NO_RESULTS = "No results"
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@runtime_checkable
class Tool(Protocol):
    """A ReAct tool: `tool(arg) -> observation text`."""

    name: str

    def __call__(self, arg: str) -> str: ...


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize_query(query: str) -> str:
    """Lowercase words joined by single spaces: "Who is X?" and "who is  x" are one query."""
    return " ".join(tokenize(query))


def first_sentences(text: str, n: int = 2) -> str:
    """The first `n` sentences of `text` (a short snippet, like a search result's)."""
    parts = _SENTENCE_END.split(text.strip())
    return " ".join(parts[:n])


class _BM25(BM25Okapi):
    """BM25Okapi with Lucene's idf, log(1 + (N - n + .5) / (n + .5)): always positive, so a tiny
    index (rank_bm25's own idf is 0 or floored for terms in half the documents) still ranks."""

    def _calc_idf(self, nd: Mapping[str, int]) -> None:
        n = self.corpus_size
        self.idf = {w: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for w, f in nd.items()}
        self.average_idf = sum(self.idf.values()) / max(len(self.idf), 1)


class _Index:
    """BM25 over token lists; `best(query)` -> (doc index, score) or None without overlap."""

    def __init__(self, docs: list[list[str]]):
        # rank_bm25 divides by the corpus size; an empty index simply finds nothing.
        self._bm25 = _BM25(docs) if docs else None

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        toks = tokenize(query)
        if self._bm25 is None or not toks:
            return []
        scores = self._bm25.get_scores(toks)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in order if scores[i] > 0]


def rank_passages(passages: list[str], query: str) -> list[int]:
    """Indices of the passages sharing a word with `query`, best BM25 score first."""
    return [i for i, _ in _Index([tokenize(p) for p in passages]).top(query, len(passages))]


class BM25Search:
    """Search over a local passage corpus: returns the first sentence(s) of the best BM25 passage
    (title + text indexed), or "No results". Built with rank_bm25, which holds the corpus in
    memory: fine for up to ~1e5 passages, not a full Wikipedia dump."""

    def __init__(self, passages: list[dict[str, str]], name: str = "search", n_sentences: int = 2):
        self.name = name
        self.n_sentences = n_sentences
        self.passages = passages
        self._index = _Index([tokenize(f"{p.get('title', '')} {p['text']}") for p in passages])

    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs: Any) -> "BM25Search":
        """Corpus lines {"title", "text"} or {"text"}."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls([json.loads(line) for line in lines if line.strip()], **kwargs)

    def search(self, query: str, k: int = 5) -> list[tuple[dict[str, str], float]]:
        """The top-k passages with their scores (only those sharing a word with the query)."""
        return [(self.passages[i], s) for i, s in self._index.top(query, k)]

    def __call__(self, query: str) -> str:
        hits = self._index.top(query, 1)
        if not hits:
            return NO_RESULTS
        return first_sentences(self.passages[hits[0][0]]["text"], self.n_sentences)


class CachedSearch:
    """Search answered from a query -> result cache: exact match after `normalize_query`, else the
    result of the most similar cached query (BM25 over the cached queries, score > `min_score`),
    else "No results". A cached None (FireAct's cache stores None when Google had no snippet) is
    returned as "None", which is how FireAct's prompts showed it."""

    def __init__(self, cache: Mapping[str, str | None], name: str = "search",
                 fallback: bool = True, min_score: float = 0.0):
        self.name = name
        self.min_score = min_score
        self._exact: dict[str, str] = {}
        for query, result in cache.items():
            self._exact.setdefault(normalize_query(query), str(result))  # first one wins
        self._keys = list(self._exact)
        self._index = _Index([k.split() for k in self._keys]) if fallback else _Index([])

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "CachedSearch":
        return cls(read_search_cache(path), **kwargs)

    def __len__(self) -> int:
        return len(self._exact)

    def lookup(self, query: str) -> tuple[str, str, str | None]:
        """(result, how, matched cached query) with how in "exact" | "bm25" | "miss"."""
        key = normalize_query(query)
        if key in self._exact:
            return self._exact[key], "exact", key
        hits = self._index.top(key, 1)
        if hits and hits[0][1] > self.min_score:
            match = self._keys[hits[0][0]]
            return self._exact[match], "bm25", match
        return NO_RESULTS, "miss", None

    def __call__(self, query: str) -> str:
        return self.lookup(query)[0]


def build_search_cache(trajectories: Iterable[Trajectory],
                       tool: str = "search") -> dict[str, str]:
    """query -> observation for every `tool[query]` action in the trajectories (first kept). The
    query is the parsed argument, as the ReAct loop would pass it to the tool."""
    cache: dict[str, str] = {}
    for traj in trajectories:
        for step in traj.steps:
            parsed = parse_action(step.action)
            if parsed and parsed[0].lower() == tool:
                cache.setdefault(parsed[1], step.observation)
    return cache


def builtin_paragraphs(corpus: str) -> list[str]:
    """The paragraphs (5+ words) of a built-in offline corpus, e.g. builtin:python-docs."""
    from ringbit.data.corpus import builtin_documents

    paragraphs = [p.strip() for doc in builtin_documents(corpus) for p in doc.split("\n\n")]
    return [p for p in paragraphs if len(p.split()) >= 5]


def observation_passages(trajectories: Iterable[Trajectory]) -> list[str]:
    """Every distinct search observation the trajectories recorded, in order (no finish lines and
    no "No results" answers)."""
    seen: dict[str, None] = {}
    for t in trajectories:
        for step in t.steps:
            parsed = parse_action(step.action)
            text = (step.observation or "").strip()
            if parsed and parsed[0].lower() == "search" and text and text != NO_RESULTS:
                seen.setdefault(text, None)
    return list(seen)


def read_search_cache(path: str | Path) -> dict[str, str | None]:
    """A cache file: a JSON object {query: result} (FireAct's tools/search.json), a JSON list or
    JSONL of {"query", "result"} (or "observation") records."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        if not ("query" in data and ("result" in data or "observation" in data)):
            return dict(data)
        data = [data]  # a one-line JSONL file
    return {r["query"]: r["result"] if "result" in r else r["observation"] for r in data}


def write_search_cache(path: str | Path, cache: Mapping[str, str | None]) -> None:
    """JSONL of {"query", "result"}: readable by `read_search_cache` / `CachedSearch.from_file`."""
    Path(path).write_text("".join(json.dumps({"query": q, "result": r}) + "\n"
                                  for q, r in cache.items()), encoding="utf-8")


def load_tools(spec: Mapping[str, str]) -> dict[str, Tool]:
    """{"search": "cache:/path.jsonl" | "bm25:/corpus.jsonl"} -> {name: tool}. finish[] is not a
    tool: the ReAct loop handles it."""
    tools: dict[str, Tool] = {}
    for name, target in spec.items():
        kind, sep, path = target.partition(":")
        if not sep or not path:
            raise ValueError(f"tool {name!r}: expected 'cache:PATH' or 'bm25:PATH', got {target!r}")
        if kind == "cache":
            tools[name] = CachedSearch.from_file(path, name=name)
        elif kind == "bm25":
            tools[name] = BM25Search.from_jsonl(path, name=name)
        else:
            raise ValueError(f"tool {name!r}: unknown kind {kind!r} (cache, bm25)")
    return tools


def search_file(spec: str) -> str | None:
    """The file a search spec names (bm25:FILE, cache:FILE); None for the built-in corpora and bare "cache"."""
    kind, _, path = spec.partition(":")
    return path if kind in ("bm25", "cache") and path and not path.startswith("builtin:") else None


def absolute_search(spec: str) -> str:
    """`spec` with its file made absolute when it exists relative to the working directory: a
    Serve replica runs elsewhere than the `ringbit serve up` that named it (bm25:../shared/…)."""
    file = search_file(spec)
    if file is None or Path(file).is_absolute() or not Path(file).exists():
        return spec
    return f"{spec.partition(':')[0]}:{Path(file).resolve()}"


def search_tool(spec: str, trajectories: str | Path | None = None) -> Tool:
    """One search tool from a spec string (evaluation configs and the Serve app use these):
    - "cache" / "cache:FILE": recorded results; FILE is a query->result cache or FireAct
      trajectories (their search actions and observations); bare "cache" uses `trajectories`;
    - "bm25:FILE": BM25 over a JSONL passage corpus; "bm25:builtin:python-docs" (or
      builtin:python-topics) over the platform's built-in offline corpus, one passage a paragraph;
      over FireAct trajectories, a closed world: every observation they recorded (what the paper's
      live searches returned) plus the built-in docs, so a good query can find the answer."""
    from ringbit.agents.react.trajectories import file_kind, read_records, read_trajectories

    kind, _, path = spec.partition(":")
    if kind == "bm25" and path.startswith("builtin:"):
        return BM25Search([{"text": p} for p in builtin_paragraphs(path)])
    if kind == "bm25" and path and file_kind(path) == "trajectory":
        return BM25Search([{"text": p} for p in observation_passages(read_trajectories(path))]
                          + [{"text": p} for p in builtin_paragraphs("builtin:python-docs")])
    if kind == "bm25" and path:
        return BM25Search.from_jsonl(path)
    if kind == "cache":
        source = path or trajectories
        if not source:
            raise ValueError("search 'cache' needs a file: cache:FILE")
        first = read_records(source)[:1]
        if first and ("instruction" in first[0] or "messages" in first[0]):
            return CachedSearch(build_search_cache(read_trajectories(source)))
        return CachedSearch.from_file(source)
    raise ValueError(f"search {spec!r}: use cache, cache:FILE, bm25:FILE or bm25:builtin:python-docs")

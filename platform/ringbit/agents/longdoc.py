"""Synthetic long documents with planted facts, for evaluating MemWalker (arXiv 2310.05029).

A document is filler prose with fact sentences ("The access code for the blue vault is 7341.")
planted at chosen depths (0 = start, 1 = end); the question asks for the planted value, so a
reader is right exactly when it found the segment holding the fact. Everything is deterministic
by seed. Filler is lorem-like text by default (it can never contain a fact), or prose sentences
from a built-in corpus (`ringbit.data.corpus`), filtered so no fact words or numbers appear.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from ringbit.agents.memwalker import LLM, MemTree, build_tree, doc_hash, navigate

__all__ = ["Fact", "make_fact", "make_document", "fact_depth", "make_eval_set",
           "normalize_answer", "is_correct", "evaluate_memwalker", "FILLERS"]

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed eiusmod tempor incididunt "
         "labore dolore magna aliqua enim minim veniam quis nostrud exercitation ullamco laboris "
         "nisi aliquip commodo consequat duis aute irure reprehenderit voluptate velit esse cillum "
         "fugiat nulla pariatur excepteur sint occaecat cupidatat proident sunt culpa officia "
         "deserunt mollit anim laborum praesent luctus accumsan viverra mauris varius nunc "
         "tristique senectus netus malesuada fames turpis egestas pellentesque habitant morbi "
         "integer feugiat scelerisque fermentum posuere sagittis orci").split()
FILLERS = ("lorem", "builtin:python-topics", "builtin:python-docs")
COLORS = ("blue", "red", "green", "amber", "violet", "silver", "golden", "crimson", "teal",
          "ivory", "scarlet", "indigo")
OBJECTS = ("vault", "locker", "gate", "archive", "cabinet", "tower", "bridge", "chest",
           "cellar", "observatory", "lighthouse", "greenhouse")


@dataclass(frozen=True)
class Fact:
    """A planted fact: the sentence, the question it answers, the gold answer, and its depth as
    a fraction of the document (0 = first words, 1 = last)."""

    sentence: str
    question: str
    answer: str
    depth: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.depth <= 1.0:
            raise ValueError(f"Fact depth must be in [0, 1], got {self.depth}")
        if not self.sentence.strip() or self.answer not in self.sentence:
            raise ValueError(f"Fact answer {self.answer!r} must appear in its sentence")


def make_fact(rng: random.Random, depth: float, taken: set[str] | None = None) -> Fact:
    """A fresh access-code fact whose color+object key and code are not in `taken` (updated)."""
    taken = taken if taken is not None else set()
    while True:
        key = f"{rng.choice(COLORS)} {rng.choice(OBJECTS)}"
        code = str(rng.randint(1000, 9999))
        if key not in taken and code not in taken:
            taken.update((key, code))
            return Fact(sentence=f"The access code for the {key} is {code}.",
                        question=f"What is the access code for the {key}?", answer=code,
                        depth=depth)


# --------------------------------------------------------------------------------------------
# Filler
# --------------------------------------------------------------------------------------------

def _lorem_sentence(rng: random.Random) -> str:
    words = [rng.choice(LOREM) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


_PROSE = re.compile(r"^[A-Z][A-Za-z ,;'()-]+\.$")
_FACT_WORDS = set(COLORS) | set(OBJECTS) | {"access", "code"}


@lru_cache(maxsize=2)
def _corpus_sentences(name: str) -> tuple[str, ...]:
    """Prose sentences of a built-in corpus: 6-30 words, letters only (no code, no digits), and
    none of the words facts use, so a planted fact stays the only one of its kind."""
    from ringbit.data.corpus import builtin_documents

    out = []
    for doc in builtin_documents(name):
        for para in re.split(r"\n\s*\n", doc):
            for sent in re.split(r"(?<=[.!?])\s+", " ".join(para.split())):
                words = sent.lower().strip(".").replace(",", " ").split()
                if (6 <= len(words) <= 30 and _PROSE.match(sent)
                        and not _FACT_WORDS.intersection(words)):
                    out.append(sent)
    if not out:
        raise ValueError(f"corpus {name!r} has no usable prose sentences")
    return tuple(out)


def _filler_source(filler: str, rng: random.Random) -> Callable[[], str]:
    if filler == "lorem":
        return lambda: _lorem_sentence(rng)
    if filler not in FILLERS:
        raise ValueError(f"unknown filler {filler!r}; choose one of {', '.join(FILLERS)}")
    sentences = _corpus_sentences(filler)
    pos = [rng.randrange(len(sentences))]  # a contiguous run reads more like a document

    def nxt() -> str:
        s = sentences[pos[0] % len(sentences)]
        pos[0] += 1
        return s

    return nxt


def _filler(n_words: int, rng: random.Random, filler: str) -> list[str]:
    """Sentences totalling exactly n_words words (the last one cut short if needed)."""
    source = _filler_source(filler, rng)
    out: list[str] = []
    total = 0
    while total < n_words:
        words = source().split()[: n_words - total]
        sent = " ".join(words)
        out.append(sent if sent.endswith(".") else sent.rstrip(",;") + ".")
        total += len(words)
    return out


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------

def make_document(n_words: int, facts: list[Fact], seed: int, filler: str = "lorem") -> str:
    """A document of exactly `n_words` whitespace words: filler sentences in paragraphs of 4-8
    sentences, with each fact sentence planted once at the sentence boundary nearest its depth.
    The same arguments always give the same text."""
    fact_words = sum(len(f.sentence.split()) for f in facts)
    if n_words < max(fact_words, 1):
        raise ValueError(f"make_document: n_words={n_words} is smaller than the planted facts "
                         f"({fact_words} words)")
    rng = random.Random(seed)
    sentences = _filler(n_words - fact_words, rng, filler)
    # Boundary b sits before sentence b; starts[b] is the filler words before it.
    starts = [0]
    for s in sentences:
        starts.append(starts[-1] + len(s.split()))
    filler_total = starts[-1]
    planted: dict[int, list[str]] = {}
    before = 0  # words of the facts already planted, all of them earlier in the text
    for fact in sorted(facts, key=lambda f: f.depth):
        # Depth is measured on the whole document, so discount the facts planted before this one.
        target = min(max(fact.depth * n_words - before, 0), filler_total)
        b = min(range(len(starts)), key=lambda i: (abs(starts[i] - target), i))
        b = max(b, max(planted, default=0))  # keep facts in depth order
        planted.setdefault(b, []).append(fact.sentence)
        before += len(fact.sentence.split())
    flow: list[str] = []
    for b in range(len(sentences) + 1):
        flow.extend(planted.get(b, []))
        if b < len(sentences):
            flow.append(sentences[b])
    paragraphs: list[str] = []
    i = 0
    while i < len(flow):
        n = rng.randint(4, 8)
        paragraphs.append(" ".join(flow[i:i + n]))
        i += n
    return "\n\n".join(paragraphs)


def fact_depth(document: str, sentence: str) -> float:
    """Where `sentence` starts, as the fraction of the document's words before it."""
    idx = document.index(sentence)
    total = len(document.split())
    return len(document[:idx].split()) / total if total else 0.0


def make_eval_set(n_docs: int, n_words: int, seed: int, distractors: int = 0,
                  filler: str = "lorem") -> list[dict[str, Any]]:
    """`n_docs` documents of `n_words` words, each with one target fact at a depth spread evenly
    over (0, 1) across the set, plus `distractors` other access-code facts at random depths.
    Rows: {"id", "document", "question", "answer", "depth"}."""
    if n_docs < 1:
        raise ValueError(f"make_eval_set: n_docs must be >= 1, got {n_docs}")
    rows = []
    for i in range(n_docs):
        rng = random.Random(f"memwalker-eval:{seed}:{i}")
        taken: set[str] = set()
        depth = round((i + 0.5) / n_docs, 4)
        target = make_fact(rng, depth, taken)
        others = [make_fact(rng, round(rng.uniform(0.0, 1.0), 4), taken)
                  for _ in range(distractors)]
        doc = make_document(n_words, [target, *others], seed=rng.randrange(2**31), filler=filler)
        rows.append({"id": i, "document": doc, "question": target.question,
                     "answer": target.answer, "depth": depth})
    return rows


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation to spaces, articles dropped, whitespace collapsed (SQuAD-style)."""
    words = str(text).lower().translate(_PUNCT).split()
    return " ".join(w for w in words if w not in {"a", "an", "the"})


def is_correct(prediction: str, gold: str) -> bool:
    """The normalised prediction contains the normalised gold answer as whole words."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    return bool(ref) and f" {ref} " in f" {pred} "


def evaluate_memwalker(examples: list[dict[str, Any]], llm: LLM, segment_words: int = 1000,
                       fanout: int = 5, *, max_steps: int = 20, summary_tokens: int = 256,
                       on_event: Callable[[dict[str, Any]], None] | None = None,
                       ) -> dict[str, Any]:
    """Run MemWalker on each example ({"document", "question", "answer", ...}); the memory tree
    is built once per distinct document and reused across its questions. Returns accuracy,
    answered rate, average steps/backtracks, trees built, LLM usage (if the llm counts it) and
    per-example rows."""
    if not examples:
        raise ValueError("evaluate_memwalker: no examples")
    trees: dict[str, MemTree] = {}
    rows = []
    for i, ex in enumerate(examples):
        key = doc_hash(ex["document"])
        if key not in trees:
            trees[key] = build_tree(ex["document"], llm, segment_words, fanout, summary_tokens=summary_tokens)
        walk = navigate(trees[key], ex["question"], llm, max_steps=max_steps, on_event=on_event)
        rows.append({"id": ex.get("id", i), "question": ex["question"], "gold": ex["answer"],
                     "answer": walk.answer, "answered": walk.answered,
                     "correct": is_correct(walk.answer, ex["answer"]), "steps": walk.steps,
                     "backtracks": walk.backtracks, "depth": ex.get("depth"),
                     "error": walk.error,
                     "path": [p["target"] for p in walk.path if p["action"] == "descend"]})
    n = len(rows)
    usage = getattr(llm, "usage", None)
    return {"n": n,
            "accuracy": sum(r["correct"] for r in rows) / n,
            "answered_rate": sum(r["answered"] for r in rows) / n,
            "avg_steps": sum(r["steps"] for r in rows) / n,
            "avg_backtracks": sum(r["backtracks"] for r in rows) / n,
            "trees_built": len(trees),
            "segment_words": segment_words, "fanout": fanout,
            "usage": usage.as_dict() if hasattr(usage, "as_dict") else None,
            "rows": rows}

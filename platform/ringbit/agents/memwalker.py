"""MemWalker: reading a long text as an interactive agent (Chen et al., "Walking Down the Memory
Maze: Beyond Context Limit through Interactive Reading", arXiv 2310.05029).

Two stages, as in the paper:

1. Memory tree construction (`build_tree`): the text is cut into segments that fit the context,
   each segment is summarised into a leaf node, and groups of up to `fanout` consecutive nodes are
   summarised again (their summaries concatenated) until a single root remains.
2. Navigation (`navigate`): for a question the model starts at the root, reads the numbered child
   summaries, reasons, and picks the child most likely to hold the answer ("Action: <n>") or goes
   back to the parent ("Action: -1"). At a leaf it reads the segment text and answers
   ("Answer: ...") or goes back. A working memory of what was read on the path is carried along.

The walk is bounded: a visited set makes a go-back choose another child, a step budget ends walks
that never answer, and an unusable reply is retried once before the walker picks the first
remaining child itself. The LLM is any `llm(prompt, stop=[...], max_tokens=N) -> str`
(`ringbit.agents.llm.AgentLLM` / `FunctionLLM`).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

__all__ = [
    "LLM", "MemNode", "MemTree", "WalkResult", "segment", "build_tree", "navigate",
    "summary_prompt", "navigation_prompt", "leaf_prompt", "best_effort_prompt",
    "parse_action", "parse_leaf",
]

EventFn = Callable[[dict[str, Any]], None]
CountFn = Callable[[str], int]

TREE_FORMAT = 1
# An empty summary would make a node unreadable for navigation; fall back to the input's head.
FALLBACK_SUMMARY_WORDS = 60
MEMORY_REASONING_WORDS = 60


class LLM(Protocol):
    def __call__(self, prompt: str, *, stop: list[str] | None = None,
                 max_tokens: int = 256) -> str: ...


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def _words(text: str) -> int:
    return len(text.split())


def _hard_split(sentence: str, max_len: int, count: CountFn | None) -> list[str]:
    """Split one over-long sentence on word boundaries (a single word longer than the bound under
    a tokenizer stays whole: there is no boundary left to cut on). Whitespace words (count None)
    are cut in runs of `max_len` directly: linear, where re-counting the growing piece after every
    word was quadratic (minutes for a long unpunctuated text)."""
    words = sentence.split()
    if count is None:
        return [" ".join(words[i:i + max_len]) for i in range(0, len(words), max_len)]
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        if current and count(" ".join(current + [word])) > max_len:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _units(text: str, max_len: int, count: CountFn | None) -> list[tuple[str, bool]]:
    """(sentence, starts_paragraph) units, each within the bound when possible."""
    count_fn = count or _words
    units: list[tuple[str, bool]] = []
    for para in _PARAGRAPH.split(text.strip()):
        para = " ".join(para.split())
        if not para:
            continue
        first = True
        for sent in _SENTENCE_END.split(para):
            pieces = [sent] if count_fn(sent) <= max_len else _hard_split(sent, max_len, count)
            for piece in pieces:
                units.append((piece, first))
                first = False
    return units


def segment(text: str, max_words: int = 1000, count: CountFn | None = None) -> list[str]:
    """Cut `text` into consecutive segments of at most `max_words` units, on paragraph and then
    sentence boundaries (words only when one sentence is longer than the bound).

    Units are whitespace words by default; pass `count` (e.g. `lambda s: len(tok.encode(s))`) to
    measure in tokenizer tokens. No word is lost: `" ".join(segs).split() == text.split()`.
    Paragraph breaks inside a segment are kept as blank lines."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("segment: the document is empty; pass the long text to read")
    if max_words < 1:
        raise ValueError(f"segment: max_words must be >= 1, got {max_words}")
    units = _units(text, max_words, count)
    if count is None:
        return _pack_words(units, max_words)
    segments: list[str] = []
    current = ""
    for sent, new_para in units:
        sep = "\n\n" if new_para else " "
        candidate = f"{current}{sep}{sent}" if current else sent
        # A tokenizer is re-run on the joined text to stay exact (its counts are not additive).
        if current and count(candidate) > max_words:
            segments.append(current)
            candidate = sent
        current = candidate
    if current:
        segments.append(current)
    return segments


def _pack_words(units: list[tuple[str, bool]], max_words: int) -> list[str]:
    """Whitespace words add up: pack units into segments keeping parts in a list (linear; growing
    one string by concatenation copied it for every sentence)."""
    segments: list[str] = []
    parts: list[str] = []
    n = 0
    for sent, new_para in units:
        k = _words(sent)
        if parts and n + k > max_words:
            segments.append("".join(parts))
            parts, n = [], 0
        if parts:
            parts.append("\n\n" if new_para else " ")
        parts.append(sent)
        n += k
    if parts:
        segments.append("".join(parts))
    return segments


# --------------------------------------------------------------------------------------------
# Memory tree
# --------------------------------------------------------------------------------------------

@dataclass
class MemNode:
    """One node of the memory tree. Leaves (level 0) hold a segment's `text` and its summary;
    internal nodes hold the summary of their children's concatenated summaries. `span` is the
    inclusive range of segment indices the node covers."""

    id: int
    level: int
    summary: str
    children: list[int] = field(default_factory=list)
    text: str | None = None
    parent: int | None = None
    span: tuple[int, int] = (0, 0)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "level": self.level, "summary": self.summary,
                "children": list(self.children), "text": self.text, "parent": self.parent,
                "span": list(self.span)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MemNode":
        return cls(id=int(d["id"]), level=int(d["level"]), summary=str(d["summary"]),
                   children=[int(c) for c in d.get("children", [])], text=d.get("text"),
                   parent=None if d.get("parent") is None else int(d["parent"]),
                   span=tuple(d.get("span", (0, 0))))  # type: ignore[arg-type]


@dataclass
class MemTree:
    """The memory tree of one document; node ids index `nodes` (leaves first, in text order, then
    each level up; the root is last). Serialisable so a tree is built once and reused."""

    nodes: list[MemNode]
    root: int
    segment_words: int
    fanout: int
    doc_sha256: str = ""

    @property
    def leaves(self) -> list[MemNode]:
        return [n for n in self.nodes if n.is_leaf]

    @property
    def height(self) -> int:
        """Number of levels (1 for a one-segment document)."""
        return self.nodes[self.root].level + 1

    def level(self, level: int) -> list[MemNode]:
        return [n for n in self.nodes if n.level == level]

    def to_dict(self) -> dict[str, Any]:
        return {"format": TREE_FORMAT, "root": self.root, "segment_words": self.segment_words,
                "fanout": self.fanout, "doc_sha256": self.doc_sha256,
                "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MemTree":
        if d.get("format", TREE_FORMAT) != TREE_FORMAT:
            raise ValueError(f"unsupported MemTree format {d.get('format')!r}")
        nodes = [MemNode.from_dict(n) for n in d["nodes"]]
        tree = cls(nodes=nodes, root=int(d["root"]), segment_words=int(d["segment_words"]),
                   fanout=int(d["fanout"]), doc_sha256=str(d.get("doc_sha256", "")))
        tree.validate()
        return tree

    def validate(self) -> None:
        """Raise ValueError unless ids are positions, links are consistent and leaves have text."""
        if not self.nodes:
            raise ValueError("MemTree has no nodes")
        if not 0 <= self.root < len(self.nodes) or self.nodes[self.root].parent is not None:
            raise ValueError(f"MemTree root {self.root} is not a parentless node")
        for i, node in enumerate(self.nodes):
            if node.id != i:
                raise ValueError(f"MemTree node at position {i} has id {node.id}")
            if node.is_leaf and node.text is None:
                raise ValueError(f"MemTree leaf {i} has no text")
            for c in node.children:
                if not 0 <= c < len(self.nodes) or self.nodes[c].parent != i:
                    raise ValueError(f"MemTree node {i} has a bad child {c}")


def doc_hash(text: str) -> str:
    """Key for caching trees by document."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def summary_prompt(texts: list[str], leaf: bool) -> str:
    """The tree-building prompt: one segment (leaf) or the concatenated child summaries."""
    if leaf:
        return ("Summarize the following passage. Keep the names, numbers and key facts.\n\n"
                f"Passage:\n{texts[0]}\n\nSummary:")
    joined = "\n\n".join(texts)
    return ("Summarize the following summaries of consecutive parts of a story into one summary. "
            "Keep the names, numbers and key facts.\n\n"
            f"Summaries:\n{joined}\n\nSummary:")


def _clean_summary(reply: str, source: str) -> str:
    text = reply.strip()
    if text.lower().startswith("summary:"):
        text = text[len("summary:"):].strip()
    if not text:
        text = " ".join(source.split()[:FALLBACK_SUMMARY_WORDS])
    return text


def _groups(n: int, fanout: int) -> list[int]:
    """Sizes of the parent groups over n nodes: as few groups as fanout allows, sizes within one
    of each other, so no parent is left with a single child."""
    k = -(-n // fanout)
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _plan_nodes(n_leaves: int, fanout: int) -> int:
    total, n = n_leaves, n_leaves
    while n > 1:
        n = len(_groups(n, fanout))
        total += n
    return total


def build_tree(text: str, llm: LLM, segment_words: int = 1000, fanout: int = 5,
               on_event: EventFn | None = None, *, count: CountFn | None = None,
               summary_tokens: int = 256) -> MemTree:
    """Build the memory tree (paper section 2.1): segments -> leaf summaries -> summaries of up to
    `fanout` child summaries per node, level by level, up to one root.

    `on_event` gets {"event": "segmented"|"summary", ...} dicts (node id, level, done/total,
    llm_s) as the tree grows, for progress polling. LLM errors propagate: a partial tree is no
    use. Raises ValueError on an empty document or bad sizes."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("build_tree: the document is empty; pass the long text to read")
    if fanout < 2:
        raise ValueError(f"build_tree: fanout must be >= 2, got {fanout}")
    segments = segment(text, segment_words, count)
    total = _plan_nodes(len(segments), fanout)
    emit = on_event or (lambda _e: None)
    emit({"event": "segmented", "segments": len(segments), "nodes": total})
    nodes: list[MemNode] = []

    def summarise(texts: list[str], leaf: bool) -> tuple[str, float]:
        start = time.perf_counter()
        reply = llm(summary_prompt(texts, leaf), stop=["\n\nSummarize", "\n\nPassage:"],
                    max_tokens=summary_tokens)
        return _clean_summary(reply, "\n\n".join(texts)), time.perf_counter() - start

    def add(node: MemNode, llm_s: float) -> None:
        nodes.append(node)
        emit({"event": "summary", "node": node.id, "level": node.level, "done": len(nodes),
              "total": total, "llm_s": round(llm_s, 4)})

    for i, seg in enumerate(segments):
        summary, s = summarise([seg], leaf=True)
        add(MemNode(id=i, level=0, summary=summary, text=seg, span=(i, i)), s)
    level_ids = list(range(len(segments)))
    level = 0
    while len(level_ids) > 1:
        level += 1
        next_ids: list[int] = []
        start = 0
        for size in _groups(len(level_ids), fanout):
            child_ids = level_ids[start:start + size]
            start += size
            summary, s = summarise([nodes[c].summary for c in child_ids], leaf=False)
            node = MemNode(id=len(nodes), level=level, summary=summary, children=child_ids,
                           span=(nodes[child_ids[0]].span[0], nodes[child_ids[-1]].span[1]))
            for c in child_ids:
                nodes[c].parent = node.id
            add(node, s)
            next_ids.append(node.id)
        level_ids = next_ids
    return MemTree(nodes=nodes, root=level_ids[0], segment_words=segment_words, fanout=fanout,
                   doc_sha256=doc_hash(text))


# --------------------------------------------------------------------------------------------
# Navigation prompts and reply parsing
# --------------------------------------------------------------------------------------------

def _memory_block(memory: list[str]) -> str:
    if not memory:
        return ""
    lines = "\n".join(f"- {m}" for m in memory)
    return f"Working memory (what you have read so far):\n{lines}\n\n"


def navigation_prompt(question: str, summaries: list[str], memory: list[str],
                      can_go_back: bool) -> str:
    """The paper's triage prompt at an internal node, with the working memory prepended to the
    numbered child summaries."""
    numbered = "\n\n".join(f"Summary {i}: {s}" for i, s in enumerate(summaries))
    back = (' If none of them is likely to contain it, reply "Action: -1" to go back.'
            if can_go_back else "")
    return ("The following passage(s) are the summaries of the different parts of a story.\n\n"
            f"To answer the question: {question}\n\n"
            "Which of the following summary is MOST LIKELY to contain information about the answer?"
            "\nFirst provide reasoning to compare the summaries before you make the decision.\n\n"
            f"{_memory_block(memory)}{numbered}\n\n"
            "Reply in the format:\nReasoning: <compare the summaries>\n"
            f"Action: <the number of the summary, 0 to {len(summaries) - 1}>.{back}\n\n"
            "Reasoning:")


def leaf_prompt(question: str, text: str, memory: list[str]) -> str:
    """The paper's leaf prompt: read the segment and answer, or go back if it is not there."""
    return (f"{_memory_block(memory)}Summary 0:\n{text}\n\n"
            f"Read the text in summary 0 and answer the question: {question}\n"
            'If the text does not contain the answer, reply "Action: -1" to go back.\n\n'
            "Reply in the format:\nReasoning: <where the answer is in the text>\n"
            "Answer: <the answer> (or Action: -1)\n\n"
            "Reasoning:")


def best_effort_prompt(question: str, memory: list[str]) -> str:
    """Asked once when a walk ends without an answer, from the working memory alone."""
    return (f"{_memory_block(memory)}"
            f"Answer the question as best you can from what you have read: {question}\n\n"
            "Answer:")


_RETRY = ("\n\nThat reply had no valid action. Reply again, ending with one line "
          '"Action: <number>" using one of the numbers above.\n\nReasoning:')
_RETRY_LEAF = ('\n\nThat reply was not usable. Reply again with "Answer: <the answer>" or, if '
               'the text does not contain it, "Action: -1".\n\nReasoning:')

_ACTION = re.compile(r"action\s*[:=]\s*\(?\s*(-?\d+)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\s*(?:summary\s*)?(-?\d+)\s*\.?\s*$", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*:\s*(.*)", re.IGNORECASE)
_GO_BACK_WORDS = re.compile(r"\b(revert|go(?:ing)? back)\b", re.IGNORECASE)


def _reasoning(reply: str) -> str:
    cut = re.split(r"\b(?:action|answer)\s*:", reply, maxsplit=1, flags=re.IGNORECASE)[0]
    text = cut.strip()
    return text[len("reasoning:"):].strip() if text.lower().startswith("reasoning:") else text


def parse_action(reply: str, n_choices: int, can_go_back: bool) -> int | None:
    """The chosen summary index from "Action: <n>" (or a bare number), -1 for go back, None when
    the reply has no valid choice (missing, out of range, or -1 where there is no parent)."""
    m = _ACTION.search(reply) or _BARE_NUMBER.match(reply)
    if m is None:
        if can_go_back and _GO_BACK_WORDS.search(reply):
            return -1
        return None
    n = int(m.group(1))
    if n == -1:
        return -1 if can_go_back else None
    return n if 0 <= n < n_choices else None


def parse_leaf(reply: str) -> tuple[str, str] | None:
    """("answer", text) or ("back", "") from a leaf reply; None when it is neither."""
    m = _ACTION.search(reply)
    if m is not None and int(m.group(1)) == -1:
        return ("back", "")
    a = _ANSWER.search(reply)
    if a is not None:
        answer = a.group(1).strip().splitlines()[0].strip() if a.group(1).strip() else ""
        if answer in {"-1", ""}:
            return ("back", "") if answer == "-1" else None
        return ("answer", answer)
    if _GO_BACK_WORDS.search(reply):
        return ("back", "")
    return None


# --------------------------------------------------------------------------------------------
# Navigation
# --------------------------------------------------------------------------------------------

@dataclass
class WalkResult:
    """One walk. `path` holds one dict per move: node (where the decision was made), level,
    action ("descend" | "back" | "answer" | "stop", plus a final "best_effort" entry when the
    walk ended unanswered), target (node moved to), choice (the number the model gave),
    reasoning, retried, fallback (the walker chose for the model), llm_s. `steps` counts moves,
    not the best-effort entry. `error` says why an unanswered walk ended."""

    question: str
    answer: str
    answered: bool
    path: list[dict[str, Any]]
    backtracks: int
    steps: int
    error: str | None = None
    llm_calls: int = 0
    llm_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "answered": self.answered,
                "path": [dict(p) for p in self.path], "backtracks": self.backtracks,
                "steps": self.steps, "error": self.error, "llm_calls": self.llm_calls,
                "llm_s": round(self.llm_s, 4)}


class _LLMFailure(Exception):
    pass


def _short(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


class _Walker:
    """State of one walk: the stack root->current, the visited (exhausted) nodes, the working
    memory, and the recorded path."""

    def __init__(self, tree: MemTree, question: str, llm: LLM, on_event: EventFn | None,
                 use_memory: bool, memory_words: int, max_tokens: int) -> None:
        self.tree, self.question, self.llm = tree, question, llm
        self.on_event, self.use_memory = on_event, use_memory
        self.memory_words, self.max_tokens = memory_words, max_tokens
        self.stack: list[int] = [tree.root]
        self.visited: set[int] = set()
        self.path_memory: list[str] = []  # one entry per descent on the current path
        self.dead_ends: list[str] = []
        self.path: list[dict[str, Any]] = []
        self.backtracks = 0
        self.calls = 0
        self.llm_s = 0.0
        self.leaf_guess = ""

    # -- helpers ------------------------------------------------------------------------------
    def memory(self) -> list[str]:
        """Working memory for the prompt, trimmed to the most recent `memory_words` words.
        The paper's ablation: navigation without it loses accuracy, so it is on by default."""
        if not self.use_memory:
            return []
        items = self.path_memory + self.dead_ends
        kept: list[str] = []
        budget = self.memory_words
        for item in reversed(items):
            n = _words(item)
            if n > budget:
                break
            kept.append(item)
            budget -= n
        return list(reversed(kept))

    def call(self, prompt: str) -> tuple[str, float]:
        start = time.perf_counter()
        try:
            reply = self.llm(prompt, stop=["\nSummary 0:", "\nThe following passage"],
                             max_tokens=self.max_tokens)
        except Exception as exc:  # an endpoint failure ends the walk with `error`, not a crash
            raise _LLMFailure(f"llm error: {type(exc).__name__}: {exc}") from exc
        finally:
            self.calls += 1
        spent = time.perf_counter() - start
        self.llm_s += spent
        return reply or "", spent

    def record(self, node: MemNode, action: str, **extra: Any) -> dict[str, Any]:
        step = {"step": len(self.path), "node": node.id, "level": node.level, "action": action,
                "target": None, "choice": None, "reasoning": "", "retried": False,
                "fallback": False, "llm_s": 0.0}
        step.update(extra)
        step["llm_s"] = round(step["llm_s"], 4)
        self.path.append(step)
        if self.on_event is not None:
            self.on_event(dict(step))
        return step

    def go_back(self, node: MemNode, **extra: Any) -> dict[str, Any]:
        """Mark `node` exhausted and return to its parent (or stop if it is the root)."""
        self.visited.add(node.id)
        self.stack.pop()
        if self.path_memory:  # the memory follows the path: forget the abandoned branch
            self.path_memory.pop()
        self.dead_ends.append(f"Node {node.id} (level {node.level}) did not contain the answer.")
        if not self.stack:
            return self.record(node, "stop", **extra)
        self.backtracks += 1
        return self.record(node, "back", target=self.stack[-1], **extra)

    # -- one move -----------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        node = self.tree.nodes[self.stack[-1]]
        return self.leaf_step(node) if node.is_leaf else self.internal_step(node)

    def internal_step(self, node: MemNode) -> dict[str, Any]:
        remaining = [c for c in node.children if c not in self.visited]
        can_back = node.id != self.tree.root
        if not remaining:
            return self.go_back(node, reasoning="every child of this node was already visited")
        # Only unvisited children are shown, so a go-back makes the model choose another one.
        prompt = navigation_prompt(self.question, [self.tree.nodes[c].summary for c in remaining],
                                   self.memory(), can_back)
        reply, spent = self.call(prompt)
        choice = parse_action(reply, len(remaining), can_back)
        retried = fallback = False
        if choice is None:  # retry once, showing the model its unusable reply
            retried = True
            reply2, s2 = self.call(prompt + " " + reply.strip() + _RETRY)
            spent += s2
            choice = parse_action(reply2, len(remaining), can_back)
            reply = reply2 if choice is not None else reply
        if choice is None:  # still unusable: take the first remaining child in text order
            fallback, choice = True, 0
        reasoning = _reasoning(reply)
        common = {"choice": choice, "reasoning": reasoning, "retried": retried,
                  "fallback": fallback, "llm_s": spent}
        if choice == -1:
            return self.go_back(node, **common)
        child = self.tree.nodes[remaining[choice]]
        self.stack.append(child.id)
        self.path_memory.append(f"Node {child.id} (level {child.level}) summary: {child.summary}"
                                f" | Why chosen: {_short(reasoning, MEMORY_REASONING_WORDS)}")
        return self.record(node, "descend", target=child.id, **common)

    def leaf_step(self, node: MemNode) -> dict[str, Any]:
        prompt = leaf_prompt(self.question, node.text or "", self.memory())
        reply, spent = self.call(prompt)
        parsed = parse_leaf(reply)
        retried = fallback = False
        if parsed is None:
            retried = True
            reply2, s2 = self.call(prompt + " " + reply.strip() + _RETRY_LEAF)
            spent += s2
            parsed = parse_leaf(reply2)
            if parsed is None:  # keep what it said as a last-resort answer, then go back
                self.leaf_guess = self.leaf_guess or _short(reply2.strip() or reply.strip(), 40)
            else:
                reply = reply2
        if parsed is None:
            fallback, parsed = True, ("back", "")
        common = {"reasoning": _reasoning(reply), "retried": retried, "fallback": fallback,
                  "llm_s": spent}
        kind, answer = parsed
        if kind == "answer":
            return self.record(node, "answer", answer=answer, **common)
        return self.go_back(node, choice=-1, **common)

    def best_effort(self) -> str:
        reply, spent = self.call(best_effort_prompt(self.question, self.memory()))
        text = reply.strip()
        m = _ANSWER.search(text)
        text = (m.group(1) if m else text).strip()
        answer = text.splitlines()[0].strip() if text else ""
        answer = "" if answer == "-1" else answer
        self.path.append({"step": len(self.path), "node": None, "level": None,
                          "action": "best_effort", "target": None, "choice": None,
                          "reasoning": "", "retried": False, "fallback": False,
                          "answer": answer, "llm_s": round(spent, 4)})
        if self.on_event is not None:
            self.on_event(dict(self.path[-1]))
        return answer or self.leaf_guess


def navigate(tree: MemTree, question: str, llm: LLM, max_steps: int = 20,
             on_event: EventFn | None = None, *, use_memory: bool = True,
             memory_words: int = 400, best_effort: bool = True,
             max_tokens: int = 256) -> WalkResult:
    """Walk the memory tree from the root to answer `question` (paper section 2.2).

    Each move is one LLM decision (two if the first reply was unusable) recorded in the path and
    passed to `on_event` as it happens. The walk ends on an answer, when every branch has been
    explored, or after `max_steps` moves; an unanswered walk returns `answered=False` with a
    best-effort answer (one extra call from the working memory, unless `best_effort=False`) and
    the reason in `error`. LLM exceptions end the walk with `error` set instead of raising."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("navigate: the question is empty; ask something about the document")
    if max_steps < 1:
        raise ValueError(f"navigate: max_steps must be >= 1, got {max_steps}")
    if not tree.nodes:
        raise ValueError("navigate: the memory tree is empty; build it from a document first")
    walker = _Walker(tree, question.strip(), llm, on_event, use_memory, memory_words, max_tokens)
    error: str | None = None
    try:
        while len(walker.path) < max_steps:
            step = walker.step()
            if step["action"] == "answer":
                return _result(walker, step["answer"], True, None)
            if step["action"] == "stop":
                error = "explored every branch without finding the answer"
                break
        else:
            error = f"max_steps ({max_steps}) reached without an answer"
        steps = len(walker.path)
        answer = walker.best_effort() if best_effort else walker.leaf_guess
    except _LLMFailure as exc:
        return _result(walker, walker.leaf_guess, False, str(exc))
    return _result(walker, answer, False, error, steps)


def _result(walker: _Walker, answer: str, answered: bool, error: str | None,
            steps: int | None = None) -> WalkResult:
    moves = steps if steps is not None else sum(
        1 for p in walker.path if p["action"] != "best_effort")
    return WalkResult(question=walker.question, answer=answer, answered=answered,
                      path=walker.path, backtracks=walker.backtracks, steps=moves, error=error,
                      llm_calls=walker.calls, llm_s=walker.llm_s)
